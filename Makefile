# Thin wrapper over CMake. `make test` and `make demo` work on a fresh Debian machine as root.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
BIN = $(BUILD)/infant-synthseg
DEMO_DIR ?= demo-out
PREFIX ?= /usr/local

# Debian packages the build needs (the CUDA toolkit is optional and not installed here).
DEB_PACKAGES = cmake g++ make pkg-config libnifti2-dev libdnnl-dev libgtest-dev libgmock-dev \
               libbenchmark-dev zlib1g-dev libpng-dev nlohmann-json3-dev nifti-bin \
               patchelf xz-utils libhdf5-dev clang libclang-rt-dev libomp-dev

.PHONY: all deps build install test test-asan demo bench device-kit device-kit-check fuzz format clean

all: build

# Installs only what is missing, so a machine that has everything runs no apt-get at all.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The program for every user: $(DESTDIR)$(PREFIX)/bin/infant-synthseg. It builds nothing, so
# that `sudo make install` after a user's `make build` leaves no root-owned files in the build.
install:
	@test -x $(BIN) || { echo "make install: no $(BIN): run make build first"; exit 2; }
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer (CPU build).
test-asan: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DINFANT_SANITIZE=ON -DINFANT_CUDA=OFF -DINFANT_BENCH=OFF
	cmake --build $(BUILD)-asan -j $(JOBS)
	# The end-to-end learning tests (300 training steps each, fp32 and bf16, 6 minutes and more
	# under the sanitizers) run in `make test`; they exercise no code the other tests miss.
	# allocator_may_return_null: a failed allocation inside the HDF Group's library (a malformed
	# Keras file in the fuzz regressions) returns null as it does without the sanitizers; leaks
	# inside that library on its error paths are suppressed (fuzz/lsan.supp), ours never.
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp ctest --output-on-failure -j $(JOBS) -E 'TinyModelLearns|Bf16TrainingLearns'

demo: build
	bash scripts/demo.sh $(BIN) $(DEMO_DIR)

bench: build
	bash scripts/bench.sh $(BUILD)

# The device kit for a bare GPU machine (docs/GPU.md): a Release CUDA build in build-kit/ and
# device-kit.tar.xz with the binaries and the libraries such a machine lacks.
device-kit: deps
	bash scripts/device-kit.sh device-kit.tar.xz

# Unpacks the kit into an empty folder: every library resolves inside it (or is the system's or
# CUDA's), and the CPU tests pass from it with a clean environment.
device-kit-check: device-kit
	bash scripts/device-kit.sh --check device-kit.tar.xz

# libFuzzer over every reader of untrusted files (clang, ASan + UBSan), FUZZ_SECONDS per target;
# findings are copied into fuzz/regressions/ (docs/RELIABILITY.md). FUZZ_SEED fixes libFuzzer's
# random sequence (CI: the same mutations every run, so a run fails on a change, not on luck);
# unset, every run explores new ones.
FUZZ_SECONDS ?= 60
FUZZ_SEED ?=
fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DINFANT_FUZZ=ON -DINFANT_CUDA=OFF -DINFANT_BENCH=OFF -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all
	FUZZ_SEED=$(FUZZ_SEED) bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

# Formats the lines changed since the last commit (in tracked files: `git add` a new one
# first), not whole files: most files were never run
# through one clang-format version, and Debian's 14 reads some macro arguments as templates
# (`ISS_INPUT(a < b, ..., c > 1 ? ...)` becomes `a<b ... c> 1`).
format:
	@command -v clang-format-diff >/dev/null || { echo "make format needs clang-format-diff (apt-get install clang-format)"; exit 2; }
	git diff -U0 --no-color HEAD -- '*.h' '*.cpp' '*.cu' '*.cuh' | clang-format-diff -p1 -i

clean:
	rm -rf $(BUILD) $(BUILD)-asan build-kit build-fuzz device-kit.tar.xz $(DEMO_DIR)
