// MathJax 3, served from the site's _static (conf.py's mathjax_path). Runs before MathJax loads, after
// conf.py's mathjax3_config has set window.MathJax: this adds to that configuration.
// The Jupyter widget manager typesets widget labels through MathJax 2's API (MathJax.Hub.Queue): give it
// that one call, backed by MathJax 3's typesetPromise, both before MathJax has started and after.
(function () {
  const hub = {
    Queue(command) {
      const element = Array.isArray(command) ? command[2] : undefined;
      if (!window.MathJax || !window.MathJax.typesetPromise) return;
      return window.MathJax.typesetPromise(element ? [element] : undefined);
    },
  };
  window.MathJax = Object.assign(window.MathJax || {}, {
    Hub: hub,
    startup: {
      ready() {
        window.MathJax.startup.defaultReady();
        window.MathJax.Hub = hub;
      },
    },
  });
})();
