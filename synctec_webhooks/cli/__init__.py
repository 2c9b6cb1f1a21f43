"""The console entry point `synctec-webhooks` and the wiring of its roles."""
