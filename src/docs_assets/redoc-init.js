// Starts ReDoc from the page's data attributes, so the page needs no inline script (strict CSP).
(function () {
  var element = document.getElementById("redoc");
  Redoc.init(element.dataset.openapiUrl, { hideDownloadButton: false }, element);
})();
