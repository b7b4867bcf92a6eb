"""A site's inventory: the cookies (server- and script-set) and third-party hosts its real visitors meet."""
