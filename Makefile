# Wharf — `make help` lists the targets.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help run test test-deploy lint fmt bench unit service e2e readme release clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## start every service on this host (SQLite, filesystem, private Redis) and print the URL
	@scripts/bootstrap.sh run
	@$(BIN)/wharf run

test: ## lint, then the whole test suite on real PostgreSQL, MariaDB, SQLite, Redis and skopeo
	@scripts/bootstrap.sh test
	@$(MAKE) --no-print-directory lint
	@mkdir -p test-results
	@echo "Deployment tests (make test-deploy) run beside the suite; their output: test-results/deploy.log"
	@$(MAKE) --no-print-directory test-deploy >test-results/deploy.log 2>&1 & deploy=$$!; \
	  WHARF_TEST_REQUIRE_SERVICES=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --ignore=tests/deploy $(PYTEST_ARGS); \
	  status=$$?; \
	  wait $$deploy; deploy_status=$$?; \
	  echo "==> deployment tests (ansible/), from test-results/deploy.log:"; tail -n 40 test-results/deploy.log; \
	  echo "Portal screenshots (every page, desktop and phone width): $(CURDIR)/test-results/portal-screenshots"; \
	  [ $$status -eq 0 ] && [ $$deploy_status -eq 0 ]

# One pytest process, no xdist: the tests of a module share one deployed site (a module fixture),
# which xdist would tear down between tests.
test-deploy: ## the Ansible rollout's tests: real sshd, loopback hosts, site.yml, upgrade.yml, kills
	@scripts/bootstrap.sh test
	@WHARF_TEST_REQUIRE_SERVICES=1 $(BIN)/pytest -p no:xdist -ra tests/deploy $(PYTEST_DEPLOY_ARGS)

lint: ## ruff and mypy
	@scripts/bootstrap.sh venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p .typecheck && ln -sfn ../shared .typecheck/wharf_shared && ln -sfn ../services/registry .typecheck/wharf_registry && ln -sfn ../services/token .typecheck/wharf_token && ln -sfn ../services/proxy .typecheck/wharf_proxy && ln -sfn ../services/ui .typecheck/wharf_ui && ln -sfn ../services/jobservice .typecheck/wharf_jobservice
	$(BIN)/mypy

fmt: ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: ## measure Wharf beside the reference registry (never fails the build)
	@scripts/bootstrap.sh test
	-$(BIN)/python -m tests.bench $(BENCH_ARGS)

release: ## build dist/wharf-release.tar: Wharf and its pinned dependencies as wheels, for ansible/
	@scripts/build-release.sh dist/wharf-release.tar

readme: ## regenerate the README's settings table
	$(BIN)/python -c "import pathlib; from wharf_shared.docs import replace_table; p = pathlib.Path('README.md'); p.write_text(replace_table(p.read_text()))"

clean: ## remove the venv, caches and the local data dir
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
