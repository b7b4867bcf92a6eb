"""The consent banner: server-rendered markup, its static assets, the endpoints under the consent prefix."""
