# Ragstream: the two commands of the quickstart are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
UV_RUN := $(UV) run --frozen
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export UV_LINK_MODE ?= copy

.PHONY: setup run test check test-unit test-integration test-e2e lint protos bench-ingest bench-query eval clean
.PHONY: bench-load soak eval-multihop bench-embed bench-peers bench-query-cpu
.PHONY: chaos check-infra infra-tools backup restore dr-drill purge
.PHONY: test-security security-fuzz bench-auth

## setup: install uv if missing, create the environment, fetch Kafka, export the embedding model to ONNX, install
## redis-server, promtool and Chromium (browser tests) if missing (apt); check Go, kubectl and terraform
## (make check-infra's tools: infra-tools below)
setup:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet --break-system-packages uv
	@command -v redis-server >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; } \
	  || { echo "redis-server is needed (rate limits and quotas): apt-get install redis-server, or brew install redis" >&2; exit 1; }
	@command -v promtool >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	  || { echo "promtool is needed (alert rule tests): apt-get install prometheus, or brew install prometheus" >&2; exit 1; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "chromium + chromium-driver not installed: the browser tests will skip" >&2
	@$(MAKE) --no-print-directory infra-tools || echo "  (needed by make check-infra and make test only)" >&2
	$(UV) sync --frozen --all-packages
	$(UV_RUN) python -m ragstream_devstack fetch-kafka
	@# The embed service's ONNX backends, exported from the shipped weights and checked against torch (cached).
	$(UV_RUN) python -m ragstream_embed.onnx_export

## run: Kafka, Postgres, migrations, topics and every service; Ctrl-C stops everything
run: setup
	$(UV_RUN) python -m ragstream_devstack run

## test: static checks, then the whole suite (unit, integration, e2e) against real Kafka, Postgres, gRPC and
## model, with line+branch coverage per package checked against its floor
test: setup check check-infra
	rm -f .coverage .coverage.*
	$(UV_RUN) pytest -m "not chaos or chaos_fast" --cov --cov-report=
	$(UV_RUN) coverage combine --quiet || true
	$(UV_RUN) python scripts/coverage_report.py

GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)

## infra-tools: check make check-infra's own tools: Go >= 1.22 (builds kubeconform and actionlint), kubectl >= 1.27
## (kustomize v5: components), terraform >= 1.11. Debian's packages cannot provide them (golang-go is 1.19,
## kubernetes-client 1.20, terraform is not packaged), so each missing one is named with where to install it from
INFRA_TOOLS_MIN := go=1.22 kubectl=1.27 terraform=1.11
infra-tools:
	@status=0; for wanted in $(INFRA_TOOLS_MIN); do tool=$${wanted%%=*}; min=$${wanted#*=}; \
	  case $$tool in \
	    go) have=$$($(GO) env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9.]*\).*/\1/p'); \
	        where="https://go.dev/doc/install (or GO=<path to go>)";; \
	    kubectl) have=$$(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: v\([0-9.]*\).*/\1/p'); \
	        where="https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/";; \
	    terraform) have=$$(terraform version 2>/dev/null | sed -n 's/^Terraform v\([0-9.]*\).*/\1/p'); \
	        where="https://developer.hashicorp.com/terraform/install (apt.releases.hashicorp.com)";; \
	  esac; \
	  if [ -n "$$have" ] && printf '%s\n%s\n' "$$min" "$$have" | sort -V -C; then echo "  $$tool $$have"; \
	  else echo "$$tool >= $$min is needed by make check-infra ($${have:-not found}): $$where" >&2; status=1; fi; \
	done; exit $$status

## check-infra: offline infrastructure checks (kustomize overlays, kubeconform, checkov against
## infra/checkov-baseline.json, hadolint, terraform, promtool, actionlint); ONLY="checkov hadolint" for some
check-infra: setup infra-tools
	@mkdir -p .cache/bin
	@test -x .cache/bin/kubeconform || GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@v0.6.7
	@test -x .cache/bin/actionlint || GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/rhysd/actionlint/cmd/actionlint@v1.7.7
	$(UV_RUN) python scripts/check_infra.py $(foreach check,$(ONLY),--only $(check))

## backup: a consistent backup of the running system (make run's Postgres and Kafka) into BACKUP=<new dir>
backup: setup
	@test -n "$(BACKUP)" || { echo "usage: make backup BACKUP=<new directory>" >&2; exit 2; }
	$(UV_RUN) python -m ragstream_devstack backup --to $(BACKUP)

## restore: BACKUP=<dir> into a new database, verified against its manifest; prints the RTO, fails on a mismatch
restore: setup
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=<backup directory>" >&2; exit 2; }
	$(UV_RUN) python -m ragstream_devstack restore --from $(BACKUP)

## dr-drill: index DOCUMENTS documents, back up, restore into a fresh Postgres, rebuild by replay; prints both RTOs
DOCUMENTS ?= 200
dr-drill: setup
	$(UV_RUN) python -m ragstream_devstack dr-drill --documents $(DOCUMENTS)

## purge: the retention job once on `make run`'s system (as the gateway's admin login); GRACE=<seconds> and
## TENANT_GRACE=<seconds> override the grace periods (GRACE=0 purges a document deleted a moment ago: for trying
## it locally), FIND="<text>" then reports where that text is still stored (exit 1 if anywhere)
GRACE ?=
TENANT_GRACE ?=
FIND ?=
purge: setup
	$(UV_RUN) python -m ragstream_devstack.purge $(if $(GRACE),--grace $(GRACE)) \
	  $(if $(TENANT_GRACE),--tenant-grace $(TENANT_GRACE)) $(if $(FIND),--find "$(FIND)")

## check: lint, formatting, strict types and the import boundaries (no services needed)
check: setup
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) mypy
	$(UV_RUN) lint-imports

test-unit: setup
	$(UV_RUN) pytest -m unit

test-integration: setup
	$(UV_RUN) pytest -m integration

test-e2e: setup
	$(UV_RUN) pytest -m e2e

## test-security: the security suite alone (authorization matrix, schemathesis, payload corpora; also in `make test`)
test-security: setup
	$(UV_RUN) pytest -m security tests/security

## security-fuzz: the schemathesis run with many more examples (FUZZ_EXAMPLES per operation, FUZZ_MAX_TIME_S)
FUZZ_EXAMPLES ?= 300
FUZZ_MAX_TIME_S ?= 1800
security-fuzz: setup
	SECURITY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SECURITY_FUZZ_MAX_TIME_S=$(FUZZ_MAX_TIME_S) \
		$(UV_RUN) pytest tests/security/test_security_schemathesis.py -p no:cacheprovider --timeout 0 -rA

lint:
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .

protos:
	$(UV_RUN) python scripts/gen_protos.py

CORPUS ?= ../shared/datasets/scifact/corpus.jsonl
LIMIT ?=
bench-ingest: setup
	$(UV_RUN) python benchmarks/ingest_throughput.py --corpus $(CORPUS) $(if $(LIMIT),--limit $(LIMIT))

bench-query: setup
	$(UV_RUN) python benchmarks/query_latency.py

## bench-query-cpu: CPU per question of every service, Postgres, Kafka and Redis (idle CPU taken out), one round
## after another (QUESTIONS=300 ROUNDS=2)
QUESTIONS ?= 300
ROUNDS ?= 2
bench-query-cpu: setup
	$(UV_RUN) python benchmarks/query_cpu.py --questions $(QUESTIONS) --rounds $(ROUNDS)

## bench-peers: Ragstream end to end against LlamaIndex and Haystack in process (own pinned venv, outside the checkout),
## same SciFact subset, model and Postgres; smoke: PEERS_ARGS="--limit-queries 20 --corpus-size 100"
# Outside the checkout: third-party torch code never sits in the repository tree (the embed service alone uses torch).
PEERS_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ragstream/peers-venv
PEERS_ARGS ?=
$(PEERS_VENV)/.requirements.stamp: benchmarks/peers/requirements.txt
	$(UV) venv --allow-existing --python 3.11 $(PEERS_VENV)
	UV_LINK_MODE=hardlink $(UV) pip sync --python $(PEERS_VENV) benchmarks/peers/requirements.txt
	@# NLTK refuses to read data files with more than one link (its CWE-59 guard): llama-index-core ships its
	@# NLTK data, so that package is copied, not hard-linked from uv's cache.
	$(UV) pip install --python $(PEERS_VENV) --link-mode copy --reinstall --no-deps \
	  $$(grep -E '^llama-index-core==' benchmarks/peers/requirements.txt)
	touch $@
bench-peers: setup $(PEERS_VENV)/.requirements.stamp
	$(UV_RUN) python benchmarks/peers.py $(PEERS_ARGS)

## bench-embed: the embed backends (torch, onnx, onnx-int8) side by side: chunks/s, query p50/p99, peak RSS, nDCG@10
bench-embed: setup
	$(UV_RUN) python benchmarks/embed_backends.py --dataset $(DATASET) --split $(SPLIT)

DATASET ?= ../shared/datasets/scifact
SPLIT ?= train
eval: setup
	$(UV_RUN) python benchmarks/eval_retrieval.py --dataset $(DATASET) --split $(SPLIT)

## eval-multihop: agent vs single-shot answers on the multi-hop set (benchmarks/multihop)
eval-multihop: setup
	$(UV_RUN) python benchmarks/eval_multihop.py

## bench-load: mixed questions and uploads at capacity, then 10x (refusals must carry Retry-After), then recovery
bench-load: setup
	$(UV_RUN) python benchmarks/load.py

## bench-auth: a valid tenant's question latency with and without a flood of wrong keys and admin tokens
bench-auth: setup
	$(UV_RUN) python benchmarks/auth_stress.py

## soak: half capacity for MINUTES minutes: p99 drift, RSS growth per service, zero errors
MINUTES ?= 10
soak: setup
	$(UV_RUN) python benchmarks/soak.py --minutes $(MINUTES)

## chaos: kill -9, broker and Postgres crashes, replicas, a frozen worker, poison records and queries under faults,
## each audited (nothing lost, nothing twice, nothing good dead-lettered); ends with one JSON summary line
chaos: setup
	$(UV_RUN) pytest -m chaos tests/chaos -p no:cacheprovider -rP

clean:
	rm -rf .cache/run .cache/security .pytest_cache .mypy_cache .coverage .coverage.*
