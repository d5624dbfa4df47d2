"""The HTTP app and what every route shares: errors, auth and the login throttle, Core-style JSON numbers, the OpenAPI document, the site pages."""
