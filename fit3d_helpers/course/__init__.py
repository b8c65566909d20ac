"""The course around the method: everything that only *presents* results (report pages, slides, the figures drawn for
them, the glossary, the paper's numbers, the notebooks' plotting helpers, the batch runner, the browser check).

It reads artifacts and never computes a stage; nothing in the method (``fit3d_helpers`` outside this folder) imports
it. ``tests/test_imports.py`` holds that wall.
"""
