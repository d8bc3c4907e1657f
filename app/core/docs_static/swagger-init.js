/* Starts Swagger UI on /docs. A file rather than FastAPI's inline script, so that the page's
   Content-Security-Policy can allow scripts from this server only (app/core/docs.py). The
   options come from the page, in the JSON of #swagger-ui's data-config attribute. */
"use strict";
(function () {
  var config = JSON.parse(document.getElementById("swagger-ui").dataset.config);
  var options = Object.assign({}, config.parameters, {
    url: config.openapiUrl,
    oauth2RedirectUrl: window.location.origin + config.oauth2RedirectUrl,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
  var ui = SwaggerUIBundle(options);
  if (config.initOAuth) {
    ui.initOAuth(config.initOAuth);
  }
  window.ui = ui;
})();
