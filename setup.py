"""The one compiled part: the HTML scanner (consentproxy/html/_scanner.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("consentproxy.html._scanner", ["consentproxy/html/_scanner.c"],
                             extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"])])
