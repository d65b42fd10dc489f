"""`entitykit view`: a self-contained viewer in the browser for entity datasets and prediction runs.

``build_viewer(dataset=..., predictions=..., out="view/")`` writes a **static folder** that opens
from disk (``file://``): no server, no network, no CDN. Why static and not a local server:

- it is simple to test, to share (zip it, put it on any file share or static web host) and to
  archive next to a run, and it keeps working after the process that wrote it is gone;
- browsers refuse to read the pixels of images loaded from ``file://`` into a canvas
  (``getImageData`` throws a SecurityError: the page is "tainted"), and refuse ``fetch`` of local
  files. So every per-image payload is a small script (``data/<name>.js``, loaded with a
  ``<script>`` tag, which ``file://`` allows) that carries the photo and the overlays as ``data:``
  URIs (canvases stay untainted: checked in headless Chromium by ``tests/test_view.py``) and the
  id maps as row-major runs, so hovering, picking and editing need no pixel access to local files.

What the folder holds (see ``docs/viewer.md``)::

    view/index.html            the page: CSS and JS inline, the gallery's index inline
    view/data/<name>.js        per image: photo, overlays (entitykit.visualize.overlay), id-map runs,
                               entity tables (id, area, source, score, best IoU with the other side)
    view/thumbs/gt/<name>.jpg  gallery thumbnails of the ground-truth overlay
    view/thumbs/pred/<name>.jpg                          … and of the prediction overlay

Per-image APe comes from the project's scorer (``entitykit.evaluation.evaluate``): each image is
given its own ``source``, so the scorer's per-source accumulation is exactly APe over that one
image (pycocotools' AP over IoU 0.50:0.95 on that image alone; undefined, shown as "—", where the
image has no ground-truth entity). The gallery shows the worst images first.
"""

from __future__ import annotations

from .build import ViewerItem, build_viewer, per_image_ape

__all__ = ["build_viewer", "per_image_ape", "ViewerItem"]
