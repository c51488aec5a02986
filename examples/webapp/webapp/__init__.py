"""webapp: a small HTTP service, shipped with its dependencies in a .deb/.rpm by unitgen."""
