"""Everything that imports pytest: the plugin's hooks, options, fixtures, claims items, session state and xdist."""
