"""Sphinx configuration of the course's static site (``make site``; tools/build_site.py lays out the sources).

Plain Sphinx + myst-nb + sphinx-book-theme, all from PyPI: they render the committed notebooks with their
stored outputs and build entirely offline. (Jupyter Book 2's HTML build downloads its theme while it builds,
so it cannot build here; Jupyter Book 1 is this same stack behind a config file.) Nothing on a page may come
from another host: MathJax and the widget manager are served from the site's own ``_static``, copied there
from ``build/node_modules`` (site/package.json pins them) after Sphinx has written the pages.
"""

project = "karpa-lab"
author = "the karpa-lab authors"
copyright = "the karpa-lab authors, MIT licence"
html_title = "karpa-lab"

extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
# $$...$$ inside a paragraph or list item is display math too, as JupyterLab shows it.
myst_dmath_double_inline = True
myst_heading_anchors = 3
# The notebooks carry the outputs of a real CPU run: show those, never re-execute.
nb_execution_mode = "off"
nb_merge_streams = True
exclude_patterns = ["**/.ipynb_checkpoints", "_build"]
root_doc = "index"

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "use_source_button": False,
    "launch_buttons": {},
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_static_path = ["_static"]
html_css_files = ["cjk.css"]
html_use_index = False  # no index entries: an empty genindex page would only be noise
html_favicon = "favicon.svg"  # declared, so browsers do not ask the server's root for /favicon.ico
html_copy_source = True  # the download button offers each lesson's .ipynb

# MathJax 3 from the site itself (a path relative to _static), not Sphinx's default CDN address.
mathjax_path = "mathjax/tex-chtml.js"
# myst-parser adds the classes MathJax should process to this; site/mathjax-config.js adds to it a bridge
# that lets the widget manager typeset through MathJax 3.
mathjax3_config = {"options": {"enableMenu": False}}
mathjax_config_path = "mathjax-config.js"

# The widget manager, likewise: the standalone embedder of @jupyter-widgets/html-manager (it bundles the
# standard controls, so no RequireJS and no module fetched from a CDN), drawing each widget from the state
# saved in the notebook. myst-nb's default points at a CDN.
nb_ipywidgets_js = {"widgets/embed.js": {}}
