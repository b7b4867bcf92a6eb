"""Discovery from real browsers: what a site's pages really load and which cookies their scripts set.

`csp` adds a report-only policy to sampled pages, `reports` reads what
browsers send back, `sightings` classifies it, `endpoint` is `/_consent/report`.
"""
