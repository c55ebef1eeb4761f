# tardis — the two commands a newcomer needs:
#   make demo   install what is missing, build, train + record Fashion-MNIST, show the run
#   make test   install what is missing, build, run every test (also under ASan+UBSan)

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc)
DEMO_RUN   ?= runs/fmnist-noisy10
DEMO_EPOCHS ?= 20
DEMO_PORT  ?= 8040

# Debian packages tardis needs to build and test.
DEB_PACKAGES = build-essential cmake pkg-config libopenblas-dev libjansson-dev \
  zlib1g-dev libpng-dev libcairo2-dev libsqlite3-dev libmicrohttpd-dev libgif-dev \
  fonts-dejavu-core dataset-fashion-mnist python3 python3-numpy python3-torch \
  nodejs chromium clang

.PHONY: all deps ui-deps build test test-asan test-tsan test-python test-ui demo bench fuzz clean format

all: build

# Installs only what is missing; does nothing (and needs no root) when all is there.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "tardis: installing missing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "tardis: run as root (or install them yourself)"; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The browser test's one npm dependency (playwright-core), from the committed lock file.
ui-deps: deps
	@if [ ! -d tests/ui/node_modules/playwright-core ] || \
	    [ tests/ui/package-lock.json -nt tests/ui/node_modules/.package-lock.json ]; then \
	  cd tests/ui && npm ci --no-audit --no-fund; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DTD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory test-ui
	$(MAKE) --no-print-directory test-asan

test-python: build
	TD_BIN=$(CURDIR)/$(BUILD)/tardis /usr/bin/python3 -m unittest discover -s tests/python -v

test-ui: build ui-deps
	TD_BIN=$(CURDIR)/$(BUILD)/tardis sh tests/ui/run.sh

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTD_WERROR=ON \
	  -DTD_SANITIZE=address,undefined >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer on every test (the pool and BLAS scopes in test_core, kNN,
# the run writer, the server, the projection, the CLI end to end, ...). Not
# part of `make test`: the build takes long. TD_THREADS=4 bounds the threads
# the tests start: two already race, and TSan's cost grows with the number of
# threads (every spin of the pool's waits is an instrumented atomic load), so
# the run takes minutes on any machine. tests/tsan.supp lists the suppressed
# reports and why.
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTD_WERROR=ON \
	  -DTD_SANITIZE=thread >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TD_THREADS=4 \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 history_size=4" \
	  ctest --output-on-failure -j $(JOBS)

# Train with 10 % label noise (recording every epoch), project every epoch, then serve
# the UI; the quality metrics are computed in the background and appear in the UI when
# ready. Ctrl-C stops the server.
demo: build
	./$(BUILD)/tardis train --dataset fashion-mnist --model mlp --epochs $(DEMO_EPOCHS) \
	  --noise 0.1 --seed 1 --force --out $(DEMO_RUN) --serve --port $(DEMO_PORT)

# Every libFuzzer harness of fuzz/ for FUZZ_SECONDS each, one after the other
# (docs/fuzzing.md); FUZZERS=npy_load picks some.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	JOBS=$(JOBS) sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZERS)

bench: build
	./$(BUILD)/bench_train

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
