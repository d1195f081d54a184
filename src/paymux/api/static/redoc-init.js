// Starts ReDoc on /redoc from paymux's own copy of its assets (no CDN, no inline script).
// ReDoc's styles are <style> elements it writes at run time (styled-components): they carry
// the page's one-time CSP nonce, handed over in a data attribute, so the page's
// Content-Security-Policy needs no 'unsafe-inline' for styles (api/docs.py).
(function () {
  var element = document.getElementById("redoc");
  Redoc.init(element.dataset.spec, { nonce: element.dataset.nonce }, element);
})();
