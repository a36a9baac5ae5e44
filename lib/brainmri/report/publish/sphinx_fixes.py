"""A Sphinx extension for one upstream glitch in the Jupyter Book 1.x stack.

sphinx-thebe adds its inline configuration script (``const THEBE_JS_URL = ...``) on
every ``env-before-read-docs`` event, which this stack emits twice per build; the
second ``const`` declaration is a JavaScript SyntaxError on every page. We drop
duplicate inline scripts when pages are rendered. Remove this once sphinx-thebe
guards against double registration.
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # The duplicate is registered once with filename None and once with "".
        key = (getattr(script, "filename", None) or "", repr(getattr(script, "attributes", {})))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def setup(app):
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", _dedupe_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
