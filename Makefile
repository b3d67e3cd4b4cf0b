# One entry point for the certified-training engine.
#
#   make            build the library, binaries (build/bin/) and test binaries
#   make run        the main job: certified training of CONV on FashionMNIST (see README)
#   make readme-demo  put the last `make run`'s numbers into the README
#   make test       install missing dependencies, build, run every test suite
#   make bench      the benchmarks (kernels, training steps, bounds, data loading)
#   make deps       install the Debian packages we need (or print the command)
#   make viewer     the relaxation viewer: build/viewer/index.html (open it in a browser)
#   make fuzz       build the libFuzzer harnesses (clang) and run each FUZZ_SECONDS
#
# Knobs: CUDA=auto|0|1  (auto: build the CUDA backend when nvcc is found)
#        CUDA_ARCH=80   (compute capability to compile for; PTX is embedded too)
#        EMU=1          (release binaries get the SIMT emulator as their CUDA backend)
#        SAN=address|thread (sanitizer for the release build; tests always use both)
#        FUZZ_SECONDS=60 (make fuzz: seconds per harness)
#        -jN            (parallel jobs; default: one per core)
# No fast-math anywhere and no reduced-precision tensor-core math: a certified
# bound must not depend on the math mode.

SHELL := /bin/bash
# One job per core unless -jN is given (make 4.3 keeps a command-line -jN over
# this): a fresh clone's `make test` is mostly compiling, and run serially it
# left CI's cores idle. Set at the top level only; sub-makes share its jobserver.
ifeq ($(MAKELEVEL),0)
  MAKEFLAGS += -j$(shell nproc)
endif
CXX ?= g++
CUDA ?= auto
CUDA_ARCH ?= 80
EMU ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC := $(shell command -v nvcc 2>/dev/null || (test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc))

# ---------------------------------------------------------------- what we found
# The OpenMP build of OpenBLAS shares libgomp's thread pool with our kernels;
# the pthread build would add a second pool that fights it for the cores.
OPENBLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
OPENBLAS_LIB := /usr/lib/x86_64-linux-gnu/openblas-openmp
HAVE_OPENBLAS := $(shell test -f $(OPENBLAS_INC)/cblas.h && echo yes)
HAVE_GLPK := $(shell test -f /usr/include/glpk.h && echo yes)
HAVE_ONNX := $(shell test -f /usr/include/onnx/onnx-ml.pb.h && echo yes)
HAVE_CUBLAS := $(shell test -f $(CUDA_HOME)/include/cublas_v2.h && ls $(CUDA_HOME)/lib64/libcublas.so >/dev/null 2>&1 && echo yes)
HAVE_CUDNN := $(shell (test -f $(CUDA_HOME)/include/cudnn.h || test -f /usr/include/cudnn.h) && echo yes)
# OpenMPI (make deps) for `mpirun -np N build/bin/train`; without it every
# binary is the single process it always was. Only train/distributed*.cpp
# include mpi.h, so only they get its flags.
MPI_INCDIRS := $(shell mpicxx --showme:incdirs 2>/dev/null)
MPI_LIBDIRS := $(shell mpicxx --showme:libdirs 2>/dev/null)
HAVE_MPI := $(shell test -n "$(MPI_INCDIRS)" && test -f $(firstword $(MPI_INCDIRS))/mpi.h && echo yes)
HAVE_NCCL := $(shell test -f $(CUDA_HOME)/include/nccl.h && ls $(CUDA_HOME)/lib64/libnccl.so >/dev/null 2>&1 && echo yes)
ifeq ($(CUDA),auto)
  USE_CUDA := $(if $(and $(NVCC),$(HAVE_CUBLAS),$(HAVE_CUDNN)),1,0)
else
  USE_CUDA := $(CUDA)
endif
ifeq ($(EMU),1)
  USE_CUDA := 0
endif
ifeq ($(filter deps clean,$(MAKECMDGOALS)),)
$(info [build] nvcc:     $(if $(NVCC),found ($(NVCC)),missing))
$(info [build] cuBLAS:   $(if $(HAVE_CUBLAS),found,missing))
$(info [build] cuDNN:    $(if $(HAVE_CUDNN),found,missing))
$(info [build] OpenBLAS: $(if $(HAVE_OPENBLAS),found,missing (run: make deps)))
$(info [build] GLPK:     $(if $(HAVE_GLPK),found,missing (run: make deps)))
$(info [build] MPI:      $(if $(HAVE_MPI),found (mpirun -np N build/bin/train ...),missing (single process only; run: make deps)))
$(info [build] NCCL:     $(if $(and $(HAVE_MPI),$(HAVE_NCCL),$(filter 1,$(USE_CUDA))),found (GPU gradients of MPI runs),$(if $(HAVE_NCCL),unused (needs MPI and the real CUDA backend),missing)))
$(info [build] ONNX:     $(if $(HAVE_ONNX),found,missing (run: make deps)))
$(info [build] CUDA backend of the binaries: $(if $(filter 1,$(USE_CUDA)),real CUDA (sm_$(CUDA_ARCH) + PTX),SIMT emulator (no nvcc or CUDA=0: --device cuda needs CTE_EMULATE_CUDA=1)))
endif

# ---------------------------------------------------------------- flags
WARN := -Wall -Wextra -Werror
INCLUDES := -I. -I$(OPENBLAS_INC)
CXXSTD := -std=c++20
BASE_FLAGS := $(CXXSTD) $(WARN) $(INCLUDES) -MMD -MP -fno-fast-math -ffp-contract=off
# -g1 (line tables, no variable locations) in every build: sanitizer and crash
# reports keep file:line, and compiling is about 30% faster than with -g (CI).
# -fno-math-errno: sqrtf need not set errno for a negative argument, so loops
# with a square root (Adam, BatchNorm) vectorise; the square roots are the same
# correctly rounded IEEE ones (this is not fast-math: no value changes).
REL_FLAGS := $(BASE_FLAGS) -O3 -march=native -fopenmp -g1 -fno-math-errno
ASAN_FLAGS := $(BASE_FLAGS) -O1 -g1 -fopenmp -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# ThreadSanitizer cannot see inside libgomp, so its build is single-threaded on
# the host side; the emulator's CUDA threads are real threads it does watch.
TSAN_FLAGS := $(BASE_FLAGS) -O1 -g1 -fsanitize=thread -Wno-unknown-pragmas
ifeq ($(SAN),address)
  REL_FLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
endif
ifeq ($(SAN),thread)
  REL_FLAGS := $(TSAN_FLAGS)
endif
EMU_DEFS := -DCTE_EMULATOR
NVCC_FLAGS := -std=c++20 -O3 $(INCLUDES) -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)] \
              -Xcompiler -Wall,-Wextra,-Werror -MMD -MP --fmad=true
LIBS := -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) -lopenblas -lmatio -lglpk -lonnx_proto -lprotobuf -lz -lpthread
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcudnn
comma := ,
ifeq ($(HAVE_MPI),yes)
  # OMPI_SKIP_MPICXX: the C API only (the C++ bindings are deprecated and warn).
  MPI_FLAGS := -DCTE_HAVE_MPI -DOMPI_SKIP_MPICXX $(addprefix -isystem ,$(MPI_INCDIRS))
  LIBS += $(addprefix -L,$(MPI_LIBDIRS)) $(addprefix -Wl$(comma)-rpath$(comma),$(MPI_LIBDIRS)) -lmpi
endif

# ---------------------------------------------------------------- sources
MAIN_SRCS := $(wildcard train/*_main.cpp tools/*_main.cpp tools/bench/bench_*.cpp)
LIB_SRCS := $(filter-out $(MAIN_SRCS),$(wildcard engine/*.cpp engine/layers/*.cpp engine/ops/*.cpp kernels/cpu/*.cpp \
              relaxations/*.cpp relaxations/layers/*.cpp datasets/*.cpp train/*.cpp tools/lib/*.cpp tools/certify/*.cpp))
# The verifier (issue 15): ONNX/VNNLIB properties, PGD, MILP, branch and bound.
LIB_SRCS += $(wildcard verify/*.cpp)
CU_SRCS := $(wildcard kernels/cuda/*.cu)
EMU_SRCS := $(wildcard kernels/emu/*.cpp)
TEST_SRCS := $(wildcard tests/*.cpp)
TEST_CU_SRCS := $(wildcard tests/*.cu)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.cpp)

obj = $(patsubst %,build/$(1)/%.o,$(2))

REL_OBJS := $(call obj,rel,$(LIB_SRCS))
ifeq ($(USE_CUDA),1)
  REL_CU_OBJS := $(call obj,rel-nvcc,$(CU_SRCS))
  REL_LINK := $(CUDA_LIBS)
  ifeq ($(HAVE_MPI)$(HAVE_NCCL),yesyes)
    REL_LINK += -lnccl
    # The NCCL variant gets its own object beside the nvcc ones: an EMU=1 build
    # (no NCCL) shares build/rel and must not link it, nor this build the other.
    REL_OBJS := $(filter-out build/rel/train/distributed_nccl.cpp.o,$(REL_OBJS)) build/rel-nvcc/train/distributed_nccl.cpp.o
  endif
else
  REL_CU_OBJS := $(call obj,rel,$(CU_SRCS) $(EMU_SRCS))
  REL_LINK :=
endif
# The fuzz harnesses go into the ASan test binary too, each entry point renamed,
# so that tests/fuzz/replay_test.cpp replays their saved inputs in `make test`
# without the clang fuzzing build (`make fuzz` fuzzes).
FUZZ_REPLAY_OBJS := $(patsubst tests/fuzz/%.cpp,build/asan/fuzz-replay/%.cpp.o,$(FUZZ_SRCS)) \
                    build/asan/tests/fuzz/replay_test.cpp.o
ASAN_OBJS := $(call obj,asan,$(LIB_SRCS) $(CU_SRCS) $(EMU_SRCS) $(TEST_SRCS) $(TEST_CU_SRCS)) $(FUZZ_REPLAY_OBJS)
# ThreadSanitizer runs the emulator and kernel-parity suites only (their CUDA
# threads are real threads), so its build is the engine, the kernels and the
# test files that hold "emulator:" or "parity:" cases (found by grep, so a new
# one joins by itself): half of CI's compile time otherwise goes to objects no
# TSan test reaches.
TSAN_LIB_SRCS := $(filter engine/% kernels/%,$(LIB_SRCS))
TSAN_TEST_SRCS := tests/main.cpp $(shell grep -lE 'TEST_CASE..(emulator|parity):' tests/*.cpp)
TSAN_OBJS := $(call obj,tsan,$(TSAN_LIB_SRCS) $(CU_SRCS) $(EMU_SRCS) $(TSAN_TEST_SRCS) $(TEST_CU_SRCS))
BIN_NAMES := $(foreach s,$(MAIN_SRCS),$(patsubst %_main,%,$(basename $(notdir $(s)))))
BINS := $(addprefix build/bin/,$(BIN_NAMES))

.PHONY: all run readme-demo test bench deps clean test-build gpu-test viewer fuzz fuzz-build
all: $(BINS) build/test/tests build/test/tests_tsan $(if $(filter 1,$(USE_CUDA)),build/test/tests_gpu) $(if $(HAVE_MPI),build/test/tests_mpi)

# ---------------------------------------------------------------- compile rules
# Each build's objects depend on a stamp of its flags (build/<build>.flags,
# rewritten only when they change), so editing a flag above rebuilds them.
STAMPED_FLAGS_rel = $(REL_FLAGS)
STAMPED_FLAGS_rel-nvcc = $(NVCC_FLAGS)
STAMPED_FLAGS_asan = $(ASAN_FLAGS)
STAMPED_FLAGS_tsan = $(TSAN_FLAGS)
STAMPED_FLAGS_fuzz = $(FUZZ_CXX) $(FUZZ_FLAGS)
build/%.flags: FORCE
	@mkdir -p build && echo '$(STAMPED_FLAGS_$*)' | cmp -s - $@ || echo '$(STAMPED_FLAGS_$*)' > $@
# Kept: a stamp that make deleted as an intermediate would rebuild everything next time.
.PRECIOUS: build/%.flags
FORCE:
.PHONY: FORCE

build/rel/%.cpp.o: %.cpp build/rel.flags
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) -c $< -o $@
build/rel/%.cu.o: %.cu build/rel.flags
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $(EMU_DEFS) -x c++ -c $< -o $@
build/rel-nvcc/train/distributed_nccl.cpp.o: train/distributed_nccl.cpp build/rel.flags
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $(MPI_FLAGS) -DCTE_HAVE_NCCL -I$(CUDA_HOME)/include -c $< -o $@
build/rel-nvcc/%.cu.o: %.cu build/rel-nvcc.flags
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@
build/asan/%.cpp.o: %.cpp build/asan.flags
	@mkdir -p $(@D)
	$(CXX) $(ASAN_FLAGS) $(EMU_DEFS) -c $< -o $@
build/asan/%.cu.o: %.cu build/asan.flags
	@mkdir -p $(@D)
	$(CXX) $(ASAN_FLAGS) $(EMU_DEFS) -x c++ -c $< -o $@
build/asan/fuzz-replay/fuzz_%.cpp.o: tests/fuzz/fuzz_%.cpp build/asan.flags
	@mkdir -p $(@D)
	$(CXX) $(ASAN_FLAGS) $(EMU_DEFS) -DLLVMFuzzerTestOneInput=cte_fuzz_replay_$* -c $< -o $@
build/tsan/%.cpp.o: %.cpp build/tsan.flags
	@mkdir -p $(@D)
	$(CXX) $(TSAN_FLAGS) $(EMU_DEFS) -c $< -o $@
build/tsan/%.cu.o: %.cu build/tsan.flags
	@mkdir -p $(@D)
	$(CXX) $(TSAN_FLAGS) $(EMU_DEFS) -x c++ -c $< -o $@

# MPI's headers for the two files that include them, in every build ("private":
# not passed down to their prerequisites, such as the build's flag stamp).
$(call obj,rel,train/distributed.cpp train/distributed_nccl.cpp): private REL_FLAGS += $(MPI_FLAGS)
$(call obj,asan,train/distributed.cpp train/distributed_nccl.cpp): private ASAN_FLAGS += $(MPI_FLAGS)
$(call obj,tsan,train/distributed.cpp train/distributed_nccl.cpp): private TSAN_FLAGS += $(MPI_FLAGS)
$(call obj,fuzz,train/distributed.cpp train/distributed_nccl.cpp): private FUZZ_FLAGS += $(MPI_FLAGS)

# ---------------------------------------------------------------- link rules
build/bin/%: build/rel/train/%_main.cpp.o $(REL_OBJS) $(REL_CU_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $^ -o $@ $(LIBS) $(REL_LINK)
build/bin/%: build/rel/tools/%_main.cpp.o $(REL_OBJS) $(REL_CU_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $^ -o $@ $(LIBS) $(REL_LINK)
build/bin/%: build/rel/tools/bench/%.cpp.o $(REL_OBJS) $(REL_CU_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $^ -o $@ $(LIBS) $(REL_LINK)
build/test/tests: $(ASAN_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(ASAN_FLAGS) $^ -o $@ $(LIBS)
# The MPI suite (tests/mpi/), run under `mpirun -np 2` by tests/run_all.sh.
MPI_TEST_SRCS := $(wildcard tests/mpi/*.cpp)
build/test/tests_mpi: $(call obj,asan,$(LIB_SRCS) $(CU_SRCS) $(EMU_SRCS) $(MPI_TEST_SRCS))
	@mkdir -p $(@D)
	$(CXX) $(ASAN_FLAGS) $^ -o $@ $(LIBS)
build/test/tests_tsan: $(TSAN_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(TSAN_FLAGS) $^ -o $@ $(LIBS) -lgomp
# The same suites against the real CUDA backend, for machines with a GPU.
# (The emulator's own tests exercise the emulator, so they stay out of it.)
GPU_TEST_SRCS := $(filter-out tests/test_emulator.cpp,$(TEST_SRCS))
GPU_TEST_CU_SRCS := $(filter-out tests/emu_test_kernels.cu,$(TEST_CU_SRCS))
build/test/tests_gpu: $(call obj,rel,$(GPU_TEST_SRCS)) $(call obj,rel-nvcc,$(GPU_TEST_CU_SRCS)) $(REL_OBJS) $(REL_CU_OBJS)
	@mkdir -p $(@D)
	$(CXX) $(REL_FLAGS) $^ -o $@ $(LIBS) $(REL_LINK)

# ---------------------------------------------------------------- the relaxation viewer
# The page computes one ReLU's regions with the engine's own rule code
# (kernels/common/relu_relaxation.h) compiled to WebAssembly by clang
# (freestanding: no libc, no emscripten); certify embeds the module with the
# page's template, script and style (tools/viewer/), so the binary alone
# writes the page.
WASM_CXX ?= clang++
WASM_FLAGS := --target=wasm32 -mbulk-memory -std=c++20 -O2 $(WARN) -I. -fno-fast-math -ffp-contract=off \
              -ffreestanding -fno-exceptions -fno-rtti -nostdlib -Wl,--no-entry
VIEWER_FILES := tools/viewer/viewer.html tools/viewer/viewer.js tools/viewer/viewer.css
build/viewer/relu_rules.wasm: tools/viewer/relu_rules_wasm.cpp kernels/common/relu_relaxation.h kernels/common/hd.h
	@mkdir -p $(@D)
	$(WASM_CXX) $(WASM_FLAGS) $< -o $@
# Each file as a raw string literal, then the module in base64 (see tools/viewer/viewer_assets.cpp).
build/gen/viewer_assets.inc: $(VIEWER_FILES) build/viewer/relu_rules.wasm
	@mkdir -p $(@D)
	@{ for f in $(VIEWER_FILES); do printf 'R"cte_asset('; cat "$$f"; printf ')cte_asset",\n'; done; \
	   printf '"'; base64 -w0 build/viewer/relu_rules.wasm; printf '"\n'; } > $@.tmp && mv $@.tmp $@
build/rel/tools/viewer/viewer_assets.cpp.o: build/gen/viewer_assets.inc
build/bin/certify: build/rel/tools/viewer/viewer_assets.cpp.o

viewer: build/bin/certify
	build/bin/certify viewer --out build/viewer

# ---------------------------------------------------------------- fuzzing
# libFuzzer harnesses (tests/fuzz/fuzz_*.cpp) for every parser of outside
# input, built with Debian's clang: the library with coverage instrumentation
# (-fsanitize=fuzzer-no-link) under ASan + UBSan, the CUDA backend emulated.
# Like the TSan build, no OpenMP on the host side (clang's would need libomp),
# so constants read only by OpenMP clauses go unused.
FUZZ_CXX ?= clang++-14
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := $(BASE_FLAGS) -O1 -g -Wno-unknown-pragmas -Wno-unused-const-variable \
              -fsanitize=fuzzer-no-link,address,undefined -fsanitize-ignorelist=tests/fuzz/ubsan_ignore.txt \
              -fno-sanitize-recover=all -fno-omit-frame-pointer $(EMU_DEFS)
FUZZ_BINS := $(patsubst tests/fuzz/%.cpp,build/fuzz/bin/%,$(FUZZ_SRCS))
FUZZ_LIB_OBJS := $(call obj,fuzz,$(LIB_SRCS) $(CU_SRCS) $(EMU_SRCS))
build/fuzz/%.cpp.o: %.cpp build/fuzz.flags
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -c $< -o $@
build/fuzz/%.cu.o: %.cu build/fuzz.flags
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -x c++ -c $< -o $@
build/fuzz/bin/%: build/fuzz/tests/fuzz/%.cpp.o $(FUZZ_LIB_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer $^ -o $@ $(LIBS) -lgomp
fuzz-build: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_LIB_OBJS) $(call obj,fuzz,$(FUZZ_SRCS))

# ---------------------------------------------------------------- jobs
deps:
	@bash tools/deps.sh

test-build: deps
	@$(MAKE) --no-print-directory $(BINS) build/test/tests build/test/tests_tsan $(if $(HAVE_MPI),build/test/tests_mpi)

# Tests: the full suite on the CPU and the emulated CUDA backend under
# AddressSanitizer; the emulator and kernel-parity suites under ThreadSanitizer;
# proofs that both sanitizers catch deliberately broken kernels; the same
# suites on a real GPU when one is present (CTE_TEST_GPU=1 forces them).
test: test-build
	@bash tests/run_all.sh

# Each harness FUZZ_SECONDS on its seed corpus (tests/fuzz/corpus/<name>, new
# inputs go to build/fuzz/corpus/<name>), after replaying the regressions.
fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

gpu-test: build/test/tests_gpu
	CTE_TEST_GPU=1 build/test/tests_gpu

bench: deps
	@$(MAKE) --no-print-directory $(BINS)
	@bash tools/bench/run_all.sh

run: deps
	@$(MAKE) --no-print-directory $(BINS)
	@bash tools/run_demo.sh

# Copies the numbers of the last `make run` into the README (tools/update_readme_demo.sh).
readme-demo:
	@bash tools/update_readme_demo.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
