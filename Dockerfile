# The grid's image, which every pod of k8s/grid/raycluster.yaml runs: this
# project pip-installed on the Ray image of the Ray and Python it pins
# (pyproject.toml: ray>=2.60,<2.61, Python 3.11).
#
# Build it from the repository root and push it where your cluster pulls from,
# then name that in raycluster.yaml's `image:` fields (tests/test_k8s_grid.py
# checks they say charging-grid:<pyproject's version>):
#
#   docker build -t charging-grid:0.1.0 .
#   docker tag charging-grid:0.1.0 REGISTRY/charging-grid:0.1.0
#   docker push REGISTRY/charging-grid:0.1.0
#
# KubeRay needs the Ray image's layout (bash, the `ray` CLI on PATH, the user
# `ray` in group users, gid 100, which raycluster.yaml's fsGroup relies on):
# hence this base and not a slim Python image with ray installed.
FROM rayproject/ray:2.60.0-py311

# The Ray image's own user, named so that nothing below runs as root: the
# project goes into the image's Python (owned by ray) as in any Ray pod.
USER ray

# pip builds in the source tree (build/, *.egg-info): a directory the user owns.
RUN mkdir -p /home/ray/src/charging-grid
WORKDIR /home/ray/src/charging-grid

# What setuptools needs: the metadata (pyproject.toml, and README.md as the
# long description) and the packages it finds under "." (grid) and
# clients/python (grid_client and the generated charging.v1 stubs). A
# directory's contents land under the same name, so the layout (and
# pyproject's package-find paths) stay as in the repository.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users grid/ grid/
COPY --chown=ray:users clients/ clients/

# The base image's Ray already satisfies pyproject's ray pin, so pip keeps it
# and adds the rest (grpcio, rocksdict, opentelemetry, ...) and the `grid`
# command. No pip cache: it would only make the image bigger.
RUN pip install --no-cache-dir .

# Pods start in the user's home, away from the source tree: `import grid`
# there means the installed package.
WORKDIR /home/ray
