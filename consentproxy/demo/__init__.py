"""A bundled demo: a small company website with the usual trackers, behind the proxy.

`consentproxy demo` shows what the proxy changes on a realistic site without
touching any real third party: the trackers are local stand-ins that log
every request they receive, so the effect of a consent choice can be read
from a file instead of guessed.
"""
