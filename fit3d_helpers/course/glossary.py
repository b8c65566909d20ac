"""What a presenter of the course is asked: a glossary, examiner questions with short answers, and the deviations from
the paper. Plain data, rendered by :mod:`fit3d_helpers.course.report` (``report/glossary.html``, a table on the index)
and :mod:`fit3d_helpers.course.slides`.

Texts are markdown with TeX math (``$…$``), turned into MathML by
:func:`fit3d_helpers.course.report.render_markdown_math`. The only numbers in them are the paper's, taken from
:mod:`fit3d_helpers.course.paper` with their table, and the course's settings, taken from
:mod:`fit3d_helpers.profiles`; nothing here is a result of a run.

Public names: :data:`GLOSSARY` (term, anchor, text), :func:`questions` (question, answer),
:func:`deviations` (rows of the "where this course deviates from the paper" table), :data:`Term`, :data:`Deviation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import paper

__all__ = ["GLOSSARY", "Deviation", "Term", "deviations", "questions", "slug"]


def slug(term: str) -> str:
    """The anchor of a term on the glossary page: ``"mIoU / mAcc / aAcc"`` → ``"miou-macc-aacc"``."""
    return re.sub(r"[^a-z0-9]+", "-", term.lower()).strip("-")


@dataclass(frozen=True)
class Term:
    term: str
    text: str

    @property
    def anchor(self) -> str:
        return slug(self.term)


def _t(table: str, value: Any) -> paper.AblationRow:
    return next(r for r in paper.ablation_rows(table) if r.value == value)


def _main(dataset: str, task: str) -> paper.Comparison:
    c = paper.comparison(dataset, task)  # type: ignore[arg-type]
    assert c is not None, (dataset, task)
    return c


GLOSSARY: tuple[Term, ...] = (
    Term(
        "3DGS (3D Gaussian splatting)",
        "A scene as many 3D Gaussians, each with a mean (position), a covariance (a scale and a rotation), an opacity "
        "and a colour. Rendering projects every Gaussian to a 2D ellipse and alpha-composites them front to back; all "
        "of it is differentiable, so the Gaussians are fitted to photos by gradient descent and grown or pruned as the "
        "fit goes (densification). FiT3D also gives each Gaussian a low-dimensional feature vector (64-d).",
    ),
    Term(
        "EWA splatting",
        "Elliptical weighted average splatting (Zwicker et al., 2001): a 3D Gaussian seen through a locally linearised "
        "perspective camera is a 2D Gaussian on the image, with covariance $\\Sigma' = J W \\Sigma W^\\top J^\\top$ "
        "($W$: world-to-camera rotation, $J$: Jacobian of the projection). 3DGS draws each Gaussian as that ellipse.",
    ),
    Term(
        "Alpha compositing",
        "The colour (or feature) of pixel $p$ is $C(p) = \\sum_i c_i \\alpha_i \\prod_{j<i} (1 - \\alpha_j)$ over the "
        "Gaussians sorted by depth: each adds its colour weighted by its opacity at $p$ and by the transmittance left "
        "by those in front. Features are composited with the same weights as colours.",
    ),
    Term(
        "Spherical harmonics (SH)",
        "Basis functions on the sphere. A Gaussian's colour depends on the viewing direction through SH coefficients "
        "(degree 3: 16 per colour channel; degree 0: one constant colour). Features have no SH: they are the same "
        "from every direction, which is what makes rendered features multi-view consistent.",
    ),
    Term(
        "SSIM",
        "Structural similarity: compares local means, variances and the covariance of two images in small windows; "
        "1 means identical. Stage 1's colour loss is $0.8\\,L_1 + 0.2\\,(1 - \\mathrm{SSIM})$.",
    ),
    Term(
        "PSNR",
        "Peak signal-to-noise ratio, $10 \\log_{10}(1 / \\mathrm{MSE})$ in dB for images in [0, 1]; higher is closer "
        "to the photo. The course reports the PSNR of the lifted scenes on held-out views.",
    ),
    Term(
        "DINOv2",
        "Meta's self-supervised vision transformers (Oquab et al., 2023), trained by self-distillation on curated "
        "images without labels. Its patch features are strong for dense tasks with only a linear head. FiT3D's default "
        "is ViT-S/14 (patches of 14 px, 384 channels, 12 blocks); timm names it `vit_small_patch14_dinov2.lvd142m`.",
    ),
    Term(
        "ViT patch tokens and the CLS token",
        "A vision transformer cuts the image into 14×14-pixel patches, embeds each as a token and runs transformer "
        "blocks over all tokens: the patch tokens are per-location features. An extra learned CLS token summarises "
        "the whole image. FiT3D fine-tunes the last block's patch tokens; the depth probe also takes the original "
        "model's CLS token.",
    ),
    Term(
        "Token grid",
        "The $h \\times w$ layout of the patch tokens: an image resized to multiples of 14 gives $h = H/14$, "
        "$w = W/14$ (224×168 px → 16×12 tokens). Stage 2's targets are resized to this grid.",
    ),
    Term(
        "LayerNorm / LayerScale",
        "LayerNorm normalises each token over its channels (zero mean, unit variance, then a learned scale and "
        "shift); DINOv2 ends with one, so its output tokens are “normed”. LayerScale multiplies each block's residual "
        "branch by a small learned per-channel vector, which keeps deep ViTs stable.",
    ),
    Term(
        "Feature lifting",
        "Stage 1: per scene, fit 3D Gaussians whose rendered colours match the photos and whose rendered, decoded "
        "features match the 2D backbone's features in every training view. One Gaussian has one feature whatever the "
        "view, so what the lifted scene renders is consistent across views by construction.",
    ),
    Term(
        "The decoder",
        "One 3×3 convolution without bias from the 64-d rendered feature map to the backbone's 384 channels, fitted "
        "per scene together with the Gaussians. Keeping 64-d per Gaussian instead of 384-d saves memory and time "
        f"({paper.cite(5)}).",
    ),
    Term(
        "Multi-view consistency",
        "The same 3D point gets the same feature in every view that sees it. A 2D backbone looks at one image at a "
        "time and only approximately has it; features rendered from the lifted Gaussians have it.",
    ),
    Term(
        "Fine-tuning vs LoRA vs adapter",
        "Fine-tuning updates all of the backbone's weights (FiT3D: full fine-tuning for one epoch). LoRA freezes a "
        "weight $W$ and learns a low-rank update, $W + \\tfrac{\\alpha}{r} B A$ (the course's own ablation: rank 4 on "
        "the qkv projections of the last 4 blocks). An adapter adds a new trainable module on a frozen backbone (the "
        f"paper's: one Swin block on frozen DINOv2, {paper.cite(6)}).",
    ),
    Term(
        "Linear probe",
        "Train only a linear layer (a 1×1 convolution) on frozen features for a task. Its score measures what the "
        "features already hold, not what a large head could learn on top of them.",
    ),
    Term(
        "BNHead",
        "The linear heads of DINOv2's evaluation (mmsegmentation). Segmentation: BatchNorm, then a 1×1 conv to the "
        "classes. Depth (`classify=True`): patch tokens with the CLS token broadcast beside them, upsampled ×4, a "
        "1×1 conv to 256 depth bins; depth is the bins' centres weighted by the normalised scores.",
    ),
    Term(
        "mIoU / mAcc / aAcc",
        "Segmentation scores in percent. mIoU: intersection over union, $TP / (TP + FP + FN)$, averaged over "
        "classes. mAcc: per-class accuracy (recall) averaged over classes. aAcc: the fraction of all pixels labelled "
        "right.",
    ),
    Term(
        "RMSE / AbsRel / δ<1.25",
        "Depth scores. RMSE: root-mean-square error in metres. AbsRel (the paper's “Rel”): mean of "
        "$|\\hat d - d| / d$. δ<1.25: the fraction of pixels with $\\max(\\hat d / d, d / \\hat d) < 1.25$ (higher is "
        "better). The paper reports RMSE and Rel only: our δ<1.25 has no counterpart in it.",
    ),
    Term(
        "SigLoss",
        "The scale-invariant log loss of the depth probe (Eigen et al., 2014), as DINOv2 writes it: with "
        "$g = \\log \\hat d - \\log d$ over valid pixels, $L = \\sqrt{\\mathrm{Var}(g) + 0.15\\,\\bar g^2}$. "
        "The variance ignores a global scale of the prediction; the second term does not.",
    ),
    Term(
        "PCA",
        "Principal component analysis. Feature maps are shown by projecting the features on their 3 main directions "
        "and reading them as RGB; one basis per row of a figure, so equal colours mean similar features.",
    ),
    Term(
        "k-means",
        "Clusters vectors into $k$ groups by alternating “assign to the nearest centre” and “move each centre to its "
        "members' mean”. The report fits one clustering on both models' features, so a colour is the same cluster in "
        "both.",
    ),
    Term(
        "DDP",
        "PyTorch DistributedDataParallel: one process per GPU, each with a copy of the model and its own share of the "
        "data; gradients are averaged across processes at every step. Stage 2 can run under it (effective batch = "
        "batch size × processes); the paper used one GPU.",
    ),
)


def questions() -> list[tuple[str, str]]:
    """Questions an examiner may ask, with short answers (markdown with TeX); the paper's numbers with their table."""
    dup, cat, orig = _t("control", "dup"), _t("control", "concat"), _t("control", "original")
    e1, e2, e3 = _t("epochs", 1), _t("epochs", 2), _t("epochs", 3)
    d32, d64, d128 = _t("feature_dim", 32), _t("feature_dim", 64), _t("feature_dim", 128)
    imnet = next(c for c in paper.OTHER if c.task == "cls")
    spp_seg = _main("ScanNet++", "seg")
    ade, kitti = _main("ADE20k", "seg"), _main("KITTI", "depth")
    assert dup.seg and cat.seg and orig.seg and e1.seg and e2.seg and e3.seg and cat.depth and dup.depth
    return [
        (
            "What question does FiT3D answer?",
            "Whether 2D foundation features (DINOv2) get better for dense tasks when they are fine-tuned to agree with "
            "a 3D-consistent version of themselves. The 3D version is built per scene with feature Gaussians; the "
            "answer is measured with linear probes for segmentation and depth. "
            f"In the paper (DINOv2 ViT-S/14, ScanNet++): {spp_seg.before:.2f} → {spp_seg.after:.2f} mIoU "
            f"({spp_seg.source}).",
        ),
        (
            "Why are features rendered with detached geometry?",
            "So that the feature loss cannot move, reshape or fade the Gaussians: geometry is fitted to the photos "
            "alone, and features are painted onto it. Otherwise Gaussians could drift to lower the feature error and "
            "the rendered features would no longer sit on real surfaces. The official CUDA rasteriser blocks these "
            "gradients in its backward pass; the course renders features with detached means, rotations, scales and "
            "opacities.",
        ),
        (
            "Why concatenate the original and the fine-tuned features?",
            "The paper says the concatenation is key to keeping DINOv2's generality (§3.3): the fine-tuned "
            "features add 3D-aware information, the original ones keep what the fine-tuning on indoor scenes could "
            f"lose. Its control ({cat.source}, ScanNet++): the original features twice, as wide as FiT3D's, give "
            f"{dup.seg.miou:.2f} mIoU against {orig.seg.miou:.2f} for the original, while original ⊕ fine-tuned gives "
            f"{cat.seg.miou:.2f} (RMSE {dup.depth.rmse:.4f} vs {cat.depth.rmse:.4f}): the gain is not the extra "
            "dimensions. Our probe has the same control, the variant `dup`.",
        ),
        (
            "Why one epoch of fine-tuning?",
            f"{e1.source} (NYUv2): 1 epoch {e1.seg.miou:.2f} mIoU in {e1.hours:g} h, 2 epochs {e2.seg.miou:.2f}, "
            f"3 epochs {e3.seg.miou:.2f}. More epochs cost more and do not help; a plausible reason is that the "
            "backbone drifts further from its original features towards the training scenes' renderings.",
        ),
        (
            "Why a linear probe?",
            "The backbone stays frozen and only a linear head is trained, so a difference between original and "
            "fine-tuned features shows the features, not a head's capacity; it is also DINOv2's standard evaluation. "
            f"The paper checks a DPT head too ({paper.cite(12)}).",
        ),
        (
            "Why 64-d features per Gaussian and a decoder?",
            f"Memory and time. {d32.source} (NYUv2): 32-d {d32.memory_mb:g} MB and {d32.hours:g} h per scene, 64-d "
            f"{d64.memory_mb:g} MB and {d64.hours:g} h, 128-d {d128.memory_mb:g} MB and {d128.hours:g} h "
            "(not trained). A 3×3 convolution per scene maps the 64-d render to DINOv2's 384 channels.",
        ),
        (
            "How do the masks enter the losses?",
            "Stage 1: pixels hidden by the anonymisation masks take the detached prediction as their target, in the "
            "colour and the feature loss, so they give no gradient but still count in the mean. Stage 2: a masked L1, "
            "$L = \\sum_p w_p \\lVert f_\\theta(I)_p - T_p \\rVert_1 / (D \\sum_p w_p)$, where $w$ is the "
            "anonymisation mask resized to the token grid (the paper; all ones where a scene has none) or, with "
            '`finetune.mask="alpha"`, the rendered alpha > 0.5.',
        ),
        (
            "What is the fine-tuning target exactly?",
            "For each training view, the lifted scene's 64-d features are rendered, decoded by that scene's decoder to "
            "384 channels and resized bilinearly to the token grid. The backbone's normed last-block patch tokens are "
            "trained towards it: AdamW, batch 2, one epoch, gradient clipping, random horizontal flips.",
        ),
        (
            "What does the 3D-awareness check measure, and does the paper measure it?",
            "For view pairs of a held-out scene that see the same surfaces, each token centre of view A is projected "
            "into view B with depth and poses (the ground truth); A's feature looks for its nearest neighbour among "
            "B's features (cosine). Recall@14px is the fraction that lands within 14 px of the truth, beside the "
            "chance level. It is the course's own check: the paper does not measure correspondences.",
        ),
        (
            "What can a run with random weights show, and what not?",
            "It shows that the pipeline runs end to end: scenes, lifting, rendering, fine-tuning, probes, caching, the "
            "report. It cannot show anything about FiT3D: a random ViT has no semantics to make 3D-aware, so its "
            "differences are noise. The report says so in red and never colours such a difference as a gain.",
        ),
        (
            "Does the fine-tuning hurt other tasks?",
            f"Not in the paper's check: ImageNet-1k linear classification {imnet.before:.2f} → {imnet.after:.2f} top-1 "
            f"({imnet.source}). Fine-tuned on ScanNet++ only, the features also help elsewhere: ADE20k "
            f"{ade.before:.2f} → {ade.after:.2f} mIoU, KITTI RMSE {kitti.before:.4f} → {kitti.after:.4f} "
            f"({ade.source}).",
        ),
        (
            "How does the course differ from the paper?",
            "The smoke profile is a CPU miniature: a few synthetic rooms instead of 230 ScanNet++ scenes, hundreds of "
            "stage-1 iterations instead of 30 000, short probes on cached features instead of the official 40k-"
            "iteration protocol, and possibly random weights. The `paper` profile follows the official recipe on one "
            "GPU. The table “where this course deviates” and `docs/fidelity.md` list each setting.",
        ),
        (
            "Why lift to 3D Gaussians instead of averaging features over views?",
            "Gaussians are an explicit 3D model: they render any view with occlusions handled by alpha compositing, "
            "and the fit fuses the noisy per-view features into one feature per 3D location. Averaging pixels across "
            "views needs to know which pixels see the same point and which are hidden: that is the geometry the "
            "Gaussians provide, fitted from the photos alone.",
        ),
    ]


@dataclass(frozen=True)
class Deviation:
    """One row of "where this course deviates from the paper": what, the paper's (official) value, our ``smoke`` and
    ``paper`` profiles' values (from :mod:`fit3d_helpers.profiles`), why."""

    what: str
    official: str
    smoke: str
    paper_profile: str
    why: str

    def for_profile(self, profile: str | None) -> str:
        return self.paper_profile if profile == "paper" else self.smoke


def _settings(profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from ..profiles import load_profile, settings

    return settings(load_profile(profile, overrides or None))


def _n(v: Any) -> str:
    """3 000 for ints, 1e-5 for floats."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}".replace(",", " ")
    if v and abs(v) < 1e-3:  # 1e-4, 6.25e-5
        mant, exp = f"{v:e}".split("e")
        return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"
    return f"{v:g}"


def _stage2_why(s: dict[str, Any], ref: dict[str, Any]) -> str:
    why = []
    if s["finetune.lr"] != ref["finetune.lr"]:
        why.append(f"lr {_n(ref['finetune.lr'])} barely moves a model in the few dozen steps of a smoke epoch")
    if s["finetune.mask"] != ref["finetune.mask"]:
        why.append("short fits leave tokens uncovered: the rendered alpha masks them")
    return "; ".join(why) or "the same"


def deviations(overrides: dict[str, Any] | None = None, profile: str | None = None) -> list[Deviation]:
    """The deviations table. ``overrides`` (profile settings, dotted keys) apply to ``profile``'s column."""
    sm = _settings("smoke", overrides if profile in (None, "smoke") else None)
    pp = _settings("paper", overrides if profile == "paper" else None)
    ref = _settings("paper")  # the official recipe (docs/fidelity.md), whatever this run overrode

    def scenes(s: dict[str, Any]) -> str:
        kind = {"synthetic": "synthetic rooms", "scannetpp": "ScanNet++ scenes"}.get(s["data.dataset"], "scenes")
        views = f", {s['data.n_views']} views each" if s["data.n_views"] else ""
        size = f"{s['data.width']}×{s['data.height']}"
        return f"{s['data.n_train']} training + {s['data.n_val']} held-out {kind}{views}, {size}"

    def stage1(s: dict[str, Any]) -> str:
        size = "full size" if s["lift.train_downscale"] == 1 else f"1/{s['lift.train_downscale']} size"
        path = (
            "decoded at full size"
            if s["lift.feature_factor"] == 0
            else f"decoded at {s['lift.feature_factor']}× the token grid"
        )
        return f"{_n(s['lift.iterations'])} iterations at {size}, SH degree {s['lift.sh_degree']}, features {path}"

    def stage2(s: dict[str, Any]) -> str:
        ep = s["finetune.epochs"]
        return f"{ep} epoch{'s' if ep != 1 else ''}, lr {_n(s['finetune.lr'])}, mask: {s['finetune.mask']}"

    def probes(s: dict[str, Any]) -> str:
        if s["probe.protocol"] == "official":
            return f"official protocol, {_n(s['probe.seg_steps'])} / {_n(s['probe.depth_steps'])} iterations"
        return f"{_n(s['probe.seg_steps'])} / {_n(s['probe.depth_steps'])} steps on cached features, no augmentation"

    return [
        Deviation(
            "backbone weights",
            "pretrained DINOv2 ViT-S/14",
            "pretrained when the model hub is reachable, else a seeded random init (red banner)",
            "the same",
            "model hubs may be unreachable; random weights check the pipeline only",
        ),
        Deviation(
            "scenes for fine-tuning",
            f"ScanNet++: {ref['data.n_train']} training + {ref['data.n_val']} validation scenes, "
            f"{ref['data.width']}×{ref['data.height']}",
            scenes(sm),
            scenes(pp),
            "minutes on a CPU; ScanNet++ needs a licence",
        ),
        Deviation(
            "stage 1 (lifting)",
            f"{_n(ref['lift.iterations'])} iterations at full size, SH degree {ref['lift.sh_degree']}, features "
            "decoded at full size, Inria's CUDA rasteriser",
            stage1(sm) + ", our PyTorch rasteriser",
            stage1(pp) + ", gsplat (its α clamp is 0.999, not 0.99)",
            "cost; gsplat replaces the official CUDA code on a GPU",
        ),
        Deviation(
            "stage 2 (fine-tuning)",
            stage2(ref),
            stage2(sm),
            stage2(pp),
            _stage2_why(sm, ref),
        ),
        Deviation(
            "probes",
            f"official protocol: augmentation, sliding window, {_n(ref['probe.seg_steps'])} / "
            f"{_n(ref['probe.depth_steps'])} iterations",
            probes(sm),
            probes(pp),
            "minutes on a CPU",
        ),
        Deviation(
            "evaluation data",
            "ScanNet++, NYUv2, ScanNet, ADE20k, Pascal VOC, KITTI",
            "the held-out synthetic rooms",
            "ScanNet++ validation and the official evaluation sets",
            "what exists offline",
        ),
        Deviation(
            "adapter (Table 6)",
            "one Swin block on frozen DINOv2",
            "a rank-4 LoRA on qkv of the last 4 blocks (the course's own ablation)",
            "the same",
            "a LoRA needs no new architecture",
        ),
        Deviation(
            "linear fusion (Table 7)",
            "the official code's fusion layer is commented out and could not train",
            "a trained 1×1 conv from 2D to D channels",
            "the same",
            "so that Table 7's row has a working counterpart",
        ),
        Deviation(
            "added checks",
            "RMSE and Rel only; no correspondence measurement",
            "also δ<1.25 and the 3D-awareness check (recall@14px)",
            "the same",
            "the course's own; neither has a paper counterpart",
        ),
    ]
