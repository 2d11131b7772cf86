//! The web server: dashboard, JSON API, metrics and health.
