# consentproxy — slim, non-root image.
#   docker build -t consentproxy .
#   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v /etc/consentproxy:/etc/consentproxy:ro -v consentproxy-data:/var/lib/consentproxy \
#     consentproxy serve -c /etc/consentproxy/consentproxy.toml
# The configuration must listen on 0.0.0.0 inside the container and put the
# admin listener on 0.0.0.0:9090 for the healthcheck below (publish that port
# only on a private interface).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A C compiler for the HTML scanner (consentproxy/html/_scanner.c); the image has Python's headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY consentproxy ./consentproxy
COPY static ./static
RUN python -m venv /opt/consentproxy \
 && /opt/consentproxy/bin/pip install --upgrade pip \
 && /opt/consentproxy/bin/pip install '.[abp]'

FROM python:3.11-slim-bookworm
ENV PATH=/opt/consentproxy/bin:$PATH \
    CONSENTPROXY_STATIC_DIR=/opt/consentproxy/static \
    CONSENTPROXY_GEOIP_DATABASE=/opt/consentproxy/geoip/GeoLite2-City-Test.mmdb \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 consentproxy \
 && useradd --system --uid 10001 --gid consentproxy --home-dir /var/lib/consentproxy --shell /usr/sbin/nologin consentproxy \
 && mkdir -p /var/lib/consentproxy /etc/consentproxy \
 && chown consentproxy:consentproxy /var/lib/consentproxy
COPY --from=build /opt/consentproxy /opt/consentproxy
# The banner's JavaScript and CSS (served under /_consent/ with content-hashed names).
COPY --from=build /src/static /opt/consentproxy/static
COPY config/consentproxy.example.toml /etc/consentproxy/consentproxy.example.toml
# MaxMind's test databases (MIT, see LICENSE-MIT) for `consentproxy demo`; mount a real GeoLite2/GeoIP2
# file and name it in [geoip] database for real traffic.
COPY config/geoip /opt/consentproxy/geoip
USER consentproxy:consentproxy
WORKDIR /var/lib/consentproxy
VOLUME ["/var/lib/consentproxy"]
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["consentproxy"]
CMD ["serve", "-c", "/etc/consentproxy/consentproxy.toml"]
