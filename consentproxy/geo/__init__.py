"""Where a visitor is, coarsely: a MaxMind database gives the country (and region), then the consent regime."""
