"""``report.html``: the Markdown report as one self-contained page for a browser.

The Markdown of ``report.md`` is rendered by Python-Markdown (the ``markdown`` package, with
its ``tables`` extension); every image it shows (PNG figures, GIF animations) is embedded as
a base64 ``data:`` URI, so the page needs neither the files beside it nor a network. Links
(the PDF versions of the figures) stay relative to the report's directory. The style sheet
is inline; the page has no script.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import pathlib
import xml.etree.ElementTree as etree

from ..errors import ValidationError

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; color: #1b1b1b; background: #ffffff; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
img { display: block; max-width: 100%; height: auto; margin: 1em 0; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; }
th { background: #f4f4f4; }
code { background: #f4f4f4; padding: .1em .3em; border-radius: 3px; font-size: 90%; }
"""


def data_uri(path: pathlib.Path) -> str:
    """``data:<mime>;base64,...`` of the file at ``path``."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _inline_images(base: pathlib.Path):
    """A Markdown extension replacing each ``<img src=relative path>`` by its data URI."""
    from markdown.extensions import Extension
    from markdown.treeprocessors import Treeprocessor

    class Inline(Treeprocessor):
        def run(self, root: etree.Element):
            for img in root.iter("img"):
                src = img.get("src", "")
                path = base / src
                if ":" in src or not path.is_file():
                    raise ValidationError(f"report image {src!r} is not a file under {base}")
                img.set("src", data_uri(path))

    class InlineImages(Extension):
        def extendMarkdown(self, md):
            md.treeprocessors.register(Inline(md), "inline_images", 0)  # after the inline patterns

    return InlineImages()


def render(markdown_text: str, base: pathlib.Path, *, title: str) -> str:
    """The HTML page of ``markdown_text`` with the images under ``base`` embedded."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", _inline_images(pathlib.Path(base))],
                             output_format="html")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write_html(out, markdown_text: str, *, title: str) -> pathlib.Path:
    """Write ``out/report.html`` from the report's Markdown (image paths relative to ``out``)."""
    out = pathlib.Path(out)
    path = out / "report.html"
    path.write_text(render(markdown_text, out, title=title), encoding="utf-8")
    return path
