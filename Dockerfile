# ServerTrack: one image for both roles (`serve` for the collector, `agent` for the nodes).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
    && useradd --system --no-create-home --uid 10001 servertrack \
    && mkdir -p /var/lib/servertrack && chown servertrack /var/lib/servertrack

# Nothing needs root at run time (ports above 1024). `serve` keeps its history in the data volume.
ENV SERVERTRACK_DATA_DIR=/var/lib/servertrack
VOLUME ["/var/lib/servertrack"]
USER servertrack
WORKDIR /home/servertrack

EXPOSE 8080 5556
ENTRYPOINT ["servertrack"]
CMD ["--help"]
