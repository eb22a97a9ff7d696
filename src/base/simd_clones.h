// ELM_CLONES marks a hot scalar loop for GCC/Clang function multiversioning: the compiler emits
// AVX-512, AVX2 and baseline versions and the loader picks one for the running CPU (ELF ifunc).
// Used where plain loops vectorize well and hand-written intrinsics would add nothing.
#pragma once

#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define ELM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ELM_CLONES
#endif
