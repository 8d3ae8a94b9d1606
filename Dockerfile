FROM python:3.11-slim
WORKDIR /app
# Binding 0.0.0.0 needs DIALKIT_API_KEY at run time (docker run -e DIALKIT_API_KEY=…): the
# server refuses to start with the API open beyond loopback. No key is baked into the image.
ENV PYTHONUNBUFFERED=1 DIALKIT_HOST=0.0.0.0 DIALKIT_PORT=8080
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --create-home dialkit && mkdir -p /app/.dialkit \
    && chown dialkit /app/.dialkit
USER dialkit
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)" || exit 1
CMD ["dialkit", "serve"]
