# The two quick-start commands: `make demo` (owl's main job) and `make test` (the whole suite).
# Both install missing Debian packages, configure and build first.
BUILD ?= build
JOBS ?= $(shell nproc)
SHARED ?= ../shared

.PHONY: deps build demo test clean fuzz

deps:
	@./scripts/install-deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@./scripts/demo.sh $(BUILD)/owl $(SHARED)

test: build
	@[ -d $(SHARED)/golden ] || { echo "test: reference data missing: expected $(SHARED)/golden beside the repository" >&2; exit 1; }
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@./scripts/fuzz.sh

clean:
	rm -rf $(BUILD)
