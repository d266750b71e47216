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
		operator/modelops/settings.py operator/modelops/drift pipelines/modelops_pipelines \
		operator/modelops/serving/config.py operator/modelops/serving/resources.py \
		operator/modelops/serving/schema.py operator/modelops/serving/outputs.py
	uv run --frozen lint-imports

# Tiers run cheapest first so a broken unit test fails in seconds, not after the cluster tier.
test: bootstrap lint
	$(PYTEST) -m unit
	$(PYTEST) -m integration
	$(PYTEST) -m cluster

unit:
	$(PYTEST) -m unit
integration:
	$(PYTEST) -m integration
cluster:
	$(PYTEST) -m cluster
e2e:
	$(PYTEST) -m e2e
