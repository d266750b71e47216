# The two commands of README.md: `make demo` (the main job) and `make test` (every test tier).
.PHONY: bootstrap demo demo-down test lint unit integration cluster e2e bench

PYTEST := uv run --frozen pytest

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	uv run --frozen modelops demo

demo-down:
	uv run --frozen modelops demo --down

lint:
	uv run --frozen ruff check .
	uv run --frozen mypy operator/modelops/api operator/modelops/decide operator/modelops/desired \
		operator/modelops/controller operator/modelops/adapters operator/modelops/handlers \
		operator/modelops/settings.py operator/modelops/kubeconfig.py operator/modelops/drift pipelines/modelops_pipelines \
		operator/modelops/serving/config.py operator/modelops/serving/resources.py \
		operator/modelops/serving/schema.py operator/modelops/serving/outputs.py \
		operator/modelops/serving/protocol.py operator/modelops/serving/batching.py operator/modelops/httpio.py \
		operator/modelops/console
	uv run --frozen lint-imports
	uv run --frozen mypy operator/modelops/formats tools/modelops_dev/cluster tools/modelops_dev/images.py \
		tools/modelops_dev/host.py tools/modelops_dev/demo.py tools/modelops_dev/cli.py

# Tiers run cheapest first so a broken unit test fails in seconds, not after the cluster tier.
# Each tier prints its slowest tests, so a CI log shows where the time went. The unit tier (pure, no ports,
# no processes) runs on one pytest-xdist worker per CPU, at most four.
test: bootstrap lint
	$(PYTEST) -m unit -n auto --maxprocesses 4 --durations=15
	$(PYTEST) -m integration --durations=15
	$(PYTEST) -m cluster --durations=15

unit:
	$(PYTEST) -m unit -n auto --maxprocesses 4
integration:
	$(PYTEST) -m integration
cluster:
	$(PYTEST) -m cluster
# The e2e tier on a real node (root): the serving stack's Go builds (KServe, Gateway API, Traefik), the images,
# `modelops cluster up --node`, then the tests against it (they install KServe and Traefik, idempotently).
# On any other cluster: KUBECONFIG=... uv run pytest -m e2e (images must be pullable there).
# The images are rebuilt from the working tree (docker's layer cache keeps an unchanged build to seconds)
# and reloaded into the node when their id changed, so the tier always tests the current code.
E2E_IMAGES := modelops/operator:dev modelops/trainer:dev modelops/model-server:dev modelops/drift-exporter:dev \
	modelops/console:dev modelops/prometheus:dev modelops/prometheus-operator:dev modelops/prometheus-config-reloader:dev \
	modelops/kserve-controller:dev modelops/kserve-agent:dev \
	modelops/kserve-storage-initializer:dev modelops/traefik:dev
e2e: bootstrap
	uv run --frozen modelops cluster build-serving
	uv run --frozen modelops images build operator trainer model-server drift-exporter console prometheus \
		prometheus-operator prometheus-config-reloader kserve-controller kserve-agent kserve-storage-initializer traefik
	uv run --frozen modelops cluster up --node --name e2e
	uv run --frozen modelops cluster load-images --name e2e $(E2E_IMAGES)
	KUBECONFIG=$$(uv run --frozen modelops cluster kubeconfig --name e2e) $(PYTEST) -m e2e

# ---- packaging (issue 8): chart, kustomize, images --------------------------------------------------
.PHONY: sync-crds chart-docs kustomize chart-test images

# charts/modelops/crds and manifests/kustomize/base/crds are copies of manifests/crds (tests check it).
sync-crds:
	uv run --frozen python scripts/crd_timezones.py
	scripts/sync_crds.sh
	uv run --frozen python scripts/render_kustomize.py

# charts/modelops/README.md from values.yaml.
chart-docs:
	uv run --frozen python scripts/chart_readme.py

# manifests/kustomize/{base,components/monitoring} rendered from the chart.
kustomize:
	uv run --frozen python scripts/render_kustomize.py

# The chart and kustomize tests alone (unit: ~25s; cluster: a few minutes, real control plane).
chart-test:
	$(PYTEST) tests/charts -m unit
	$(PYTEST) tests/charts -m cluster

# The four images, offline (wheelhouse + local base image); CPU-heavy, not part of `make test`.
images:
	uv run --frozen modelops images build
