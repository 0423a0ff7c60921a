# pullpass: `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO       ?= go
BIN_DIR  := bin
E2E_DIR  := _output/e2e
PKGS     := ./...
FUZZTIME ?= 2m

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binaries into bin/ (pullpass, kubectl-pullpass)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN_DIR)/pullpass ./cmd/pullpass
	ln -sf pullpass $(BIN_DIR)/kubectl-pullpass

.PHONY: release
release: ## Release without Docker: make release VERSION=v0.2.0 RELEASE_REPO=ghcr.io/you COSIGN_KEY=cosign.key (images for linux/amd64+arm64, chart, CLI archives, SBOMs, krew manifest, signatures; see README "Releasing")
	@[ -n "$(VERSION)" ] && [ -n "$(RELEASE_REPO)" ] || { echo "set VERSION and RELEASE_REPO, e.g. make release VERSION=v0.2.0 RELEASE_REPO=ghcr.io/you"; exit 2; }
	VERSION=$(VERSION) RELEASE_REPO=$(RELEASE_REPO) hack/release/release.sh

.PHONY: test-release
test-release: ## make release to a registry started here (TLS, own CA, password, throwaway cosign key), checked with crane, helm, cosign, qemu (arm64) and krew
	hack/release/test-release.sh

.PHONY: unit
unit: test-assets ## Run unit and integration tests (a real kube-apiserver + etcd per package, pkg/testenv; fuzz seed corpora; the matcher against the kubelet's own code; alerts and dashboard against Prometheus's parsers, alerts under promtool test rules; the Prometheus config the operator's generator makes of the chart)
	$(GO) test -count=1 $(PKGS)
	cd hack/tools/kube && $(GO) test -count=1 .
	cd hack/tools/promcheck && $(GO) test -count=1 .
	cd hack/tools/promconfig && $(GO) test -count=1 ./...
	cd hack/release && $(GO) test -count=1 ./...

.PHONY: test-assets
test-assets: ## Build kube-apiserver into the cache and install etcd (Debian's etcd-server) for the integration tier, and promtool (Debian's prometheus), if missing
	@command -v etcd >/dev/null 2>&1 || { echo "installing etcd-server"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { echo "installing prometheus (for promtool)"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@KUBE_BINARIES=kube-apiserver hack/build-kube.sh >/dev/null

.PHONY: generate
generate: ## Write the Registry CRD (package crd and the chart's crds/) and deepcopy from the markers in pkg/apis (controller-gen, pinned in hack/tools/codegen), and the chart's README from its values (helm-docs)
	hack/tools/codegen/generate.sh
	hack/chart-docs.sh

.PHONY: verify
verify: ## Fail if a generated file differs from what make generate writes, or the README's Layout table misses a package
	hack/tools/codegen/generate.sh --verify
	hack/chart-docs.sh --verify
	hack/check-layout.sh

.PHONY: lint
lint: verify ## verify, gofmt, go vet, golangci-lint (pinned in hack/build-tools.sh, built once into the cache), helm lint --strict
	$$(hack/build-tools.sh helm | tail -n 1)/helm lint --strict charts/pullpass
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@for m in $$(git ls-files '*go.mod'); do (cd $$(dirname $$m) && $(GO) mod tidy -diff >/dev/null) || { echo "$$m: go mod tidy would change it"; exit 1; }; done
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./e2e/...
	cd hack/tools/kube && $(GO) vet .
	cd hack/tools/promcheck && $(GO) vet .
	cd hack/tools/promconfig && $(GO) vet ./...
	cd hack/release && $(GO) vet ./...
	@lint=$$(hack/build-tools.sh golangci-lint | tail -n 1)/golangci-lint; \
	  $$lint run ./... && $$lint run --build-tags e2e ./e2e/... && (cd hack/release && $$lint run ./...)

.PHONY: test
test: lint unit test-demo test-clusters ## Run everything: lint, unit and integration tests, make demo as a newcomer runs it, the e2e suite on a fresh harness cluster (with make test-release beside it), then on a fresh 3-node kind cluster with the chart's defaults, installed from a release (make release to its registry, then helm install of the OCI chart alone)

# The harness suite mostly waits (pulls, refreshes, alerts): make test-release (its own registry on
# 127.0.0.1:25460) and kind's node image parts, which need no engine, run meanwhile, so a fresh
# machine does not build them after it (about 10 and 18 min). Each runs in its own process group,
# killed if anything fails; their logs are _output/test-release.log and _output/kind-parts.log.
.PHONY: test-clusters
test-clusters: ## The e2e suite on a fresh harness cluster, then on a fresh kind cluster; make test-release and the kind node image's parts run while the harness suite runs
	@set -e; mkdir -p _output; parts=; release=; \
	  trap '[ -z "$$parts" ] || kill -- -$$parts 2>/dev/null || true; [ -z "$$release" ] || kill -- -$$release 2>/dev/null || true' EXIT; \
	  setsid $(MAKE) --no-print-directory test-release >_output/test-release.log 2>&1 & release=$$!; \
	  if [ "$${PULLPASS_KIND_ENGINE:-}" != host ] && ! docker info >/dev/null 2>&1; then \
	    setsid e2e/kind/node-image.sh --parts >_output/kind-parts.log 2>&1 & parts=$$!; fi; \
	  $(MAKE) --no-print-directory test-harness; \
	  wait $$release || { cat _output/test-release.log; echo "make test-release failed"; exit 1; }; release=; \
	  tail -n 1 _output/test-release.log; \
	  if [ -n "$$parts" ]; then \
	    wait $$parts || { cat _output/kind-parts.log; echo "kind node image parts failed"; exit 1; }; parts=; \
	    tail -n 1 _output/kind-parts.log; fi; \
	  PULLPASS_FROM_RELEASE=1 $(MAKE) --no-print-directory test-kind

# A newcomer's Go caches are empty: make demo with a module cache and a build cache of its own
# (the version-keyed Kubernetes and tool binaries in PULLPASS_CACHE stay), then down, checked clean.
.PHONY: test-demo
test-demo: ## The README's main job as a newcomer meets it: make demo with empty Go module and build caches of its own, then the harness down
	@set -e; fresh=$$(mktemp -d "$${TMPDIR:-/var/tmp}/pullpass-newcomer.XXXXXX"); \
	  trap 'e2e/cluster/down.sh >/dev/null 2>&1; GOMODCACHE=$$fresh/mod go clean -modcache; rm -rf "$$fresh"; e2e/cluster/check-clean.sh || exit 1' EXIT; \
	  e2e/cluster/down.sh >/dev/null 2>&1 || true; \
	  start=$$(date +%s); GOMODCACHE=$$fresh/mod GOCACHE=$$fresh/build $(MAKE) --no-print-directory demo; \
	  echo "make demo with empty Go caches: $$(( $$(date +%s) - start )) s"

.PHONY: test-harness
test-harness: ## The e2e suite against pullpass deployed on a fresh harness cluster (the fast loop), torn down after
	@set -e; trap 'e2e/cluster/down.sh; e2e/cluster/check-clean.sh || exit 1' EXIT; e2e/cluster/down.sh >/dev/null 2>&1 || true; \
	  e2e/cluster/up.sh; e2e/cluster/deploy.sh; $(MAKE) --no-print-directory e2e

.PHONY: test-kind
test-kind: ## The e2e suite on a fresh kind cluster (1 control plane, 2 workers, chart defaults), torn down after
	@set -e; trap 'e2e/kind/down.sh; e2e/kind/check-clean.sh || exit 1' EXIT; e2e/kind/down.sh >/dev/null 2>&1 || true; \
	  $(MAKE) --no-print-directory e2e-kind

.PHONY: e2e
e2e: ## Run the e2e suite against a running cluster (the harness's, or E2E_KUBECONFIG/E2E_REGISTRY_ENV); E2E_ARGS="-run X -v" passes go test flags
	@$(call e2e_suite,$(E2E_DIR),,-timeout 30m)

.PHONY: cluster-up
cluster-up: ## Start the e2e harness: etcd, control plane, containerd, kubelet, private registry (root)
	e2e/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop every harness process and unmount what it mounted
	e2e/cluster/down.sh

.PHONY: fuzz
fuzz: ## Fuzz each target for FUZZTIME (default 2m)
	$(GO) test ./pkg/image -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/match -run '^$$' -fuzz '^FuzzPattern$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/dockerconfig -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/pullthrough -run '^$$' -fuzz '^FuzzRewrite$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/image -run '^$$' -fuzz '^FuzzHostAgrees$$' -fuzztime $(FUZZTIME)
	$(GO) test ./webhook/inject -run '^$$' -fuzz '^FuzzOriginalImages$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: ## Run the Go benchmarks (see docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

.PHONY: clean
clean: ## Remove build output (the harness must be down)
	rm -rf $(BIN_DIR) _output

# e2e_suite DIR,PREFIX,FLAGS: the e2e suite through gotestsum (pinned in hack/build-tools.sh):
# a line per test as it ends, the failures' output at the end, then the slowest tests, from
# DIR/e2e-tests.json (go test -json), the figures to weigh which cluster needs which test.
define e2e_suite
ts=$$(hack/build-tools.sh gotestsum | tail -n 1)/gotestsum; mkdir -p $(1); rc=0; \
  $(2) $$ts --format testname --format-hide-empty-pkg --jsonfile $(1)/e2e-tests.json -- \
    -tags e2e -count=1 $(3) $(E2E_ARGS) ./e2e/... || rc=$$?; \
  echo "slowest e2e tests (over 20 s):"; $$ts tool slowest --jsonfile $(1)/e2e-tests.json --threshold 20s; exit $$rc
endef

KIND_ENV := E2E_KUBECONFIG=$(CURDIR)/_output/kind/kubeconfig E2E_REGISTRY_ENV=$(CURDIR)/_output/kind/registry.env \
  E2E_ENDPOINTS_ENV=$(CURDIR)/_output/kind/endpoints.env E2E_SCRIPTS_DIR=$(CURDIR)/e2e/kind E2E_HOST_NETWORK=false E2E_PIN_NODE=true

.PHONY: kind-up
kind-up: ## kind cluster (kind.yaml: 1 control plane, 2 workers) + private registry; offline with its own dockerd and node image when no Docker engine is reachable
	e2e/kind/up.sh

.PHONY: kind-deploy
kind-deploy: ## Build pullpass's images and install the chart (default values, 2 webhook replicas, agent on every node) into the kind cluster
	e2e/kind/deploy.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster and its registry, stop the own dockerd, leave the host as it was (checked)
	e2e/kind/down.sh
	e2e/kind/check-clean.sh

.PHONY: e2e-kind
e2e-kind: ## The e2e suite on the kind cluster (kind-up and kind-deploy first, if not done)
	e2e/kind/up.sh
	e2e/kind/deploy.sh
	@$(call e2e_suite,_output/kind,e2e/kind/netns.sh env $(KIND_ENV) E2E_ECR_LISTEN=$$(sed -n 's/^ECR_LISTEN=//p' _output/kind/endpoints.env),-timeout 45m)

.PHONY: demo-kind
demo-kind: ## make demo's story on the kind cluster: webhook pull secrets on each worker, a Cluster-scope registry served by each node's agent
	e2e/kind/demo.sh

.PHONY: deploy
deploy: ## Build images from this checkout and install the chart into the harness cluster
	e2e/cluster/deploy.sh

.PHONY: demo
demo: ## The main job: cluster, pullpass deployed, a pod pulling a private image with no secret written by anyone
	e2e/cluster/demo.sh

.PHONY: fuzz-kubelet
fuzz-kubelet: ## Fuzz pullpass's matcher against the kubelet's own code (FUZZTIME, default 2m)
	cd hack/tools/kube && $(GO) test -run '^$$' -fuzz '^FuzzMatchesLikeKubelet$$' -fuzztime $(FUZZTIME) .

.PHONY: restart-kubelet
restart-kubelet: ## Restart the harness kubelet alone (it reads its credential provider config at start only)
	e2e/cluster/restart-kubelet.sh
