/**
 * llama.cpp's GGUF format: block quantization, the file container and llama-quantize's per-tensor recipes.
 *
 * <ul>
 *   <li>{@link org.sparkquant.format.gguf.GgmlQuant}: quantize rows of floats into ggml blocks (Q4_0 … Q8_0,
 *       Q2_K … Q6_K, F16, BF16, F32) byte-identically to ggml's reference quantizers, with or without an
 *       importance matrix, and dequantize; {@link org.sparkquant.format.gguf.GgmlBlockScales} splits a quantizer
 *       into "choose the block's scales" and "code one element" for GPTQ-calibrated quantization.</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufWriter} / {@link org.sparkquant.format.gguf.GgufReader}: the GGUF
 *       v3 container, streamed tensor by tensor, with offsets known up front
 *       ({@link org.sparkquant.format.gguf.GgufLayout}).</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufRecipe} / {@link org.sparkquant.format.gguf.GgufPlan}: which type
 *       each tensor gets for a {@link org.sparkquant.format.gguf.LlamaFileType} such as Q4_K_M, and the sizes;
 *       {@link org.sparkquant.format.gguf.GgufNames}: Hugging Face → GGUF names and the q/k row permutation.</li>
 * </ul>
 */
package org.sparkquant.format.gguf;
