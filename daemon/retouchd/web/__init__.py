"""The web interface (`retouchd web`, or `retouchd run` with `web_port`): watch, review and steer the work."""
