# SPDX-License-Identifier: MIT
# A thin wrapper over Meson. `make demo` and `make check` work on a fresh machine: they install
# what is missing (scripts/install-deps) and build first.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps build check demo bench fuzz install clean format

all: build

deps:
	@./scripts/install-deps

$(BUILD)/build.ninja:
	@./scripts/install-deps
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

check:
	@./scripts/check.sh

demo: build
	@./scripts/demo.sh $(BUILD)

bench: build
	@./scripts/bench.sh $(BUILD)

# libFuzzer targets, built with clang into build-fuzz/.
fuzz:
	@./scripts/install-deps
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false
	ninja -C build-fuzz

install: build
	meson install -C $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build*.log
