// Starts Swagger UI on /docs. An external file rather than an inline <script>, so the docs CSP needs no
// 'unsafe-inline' for scripts; the OpenAPI URL comes from the page (data-openapi-url).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // The default is the public validator.swagger.io: a call to another host, refused by the CSP anyway.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
