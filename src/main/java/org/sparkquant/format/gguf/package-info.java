/**
 * llama.cpp's GGUF format: block quantization, the file container, llama-quantize's per-tensor recipes, the export
 * of Hugging Face checkpoints, GGUF files as evaluation input, and importance-matrix files.
 *
 * <ul>
 *   <li>{@link org.sparkquant.format.gguf.GgmlQuant}: quantize rows of floats into ggml blocks (Q4_0 … Q8_0,
 *       Q2_K … Q6_K, F16, BF16, F32) byte-identically to ggml's reference quantizers, with or without an
 *       importance matrix, and dequantize; {@link org.sparkquant.format.gguf.GgmlBlockScales} splits a quantizer
 *       into "choose the block's scales" and "code one element", which {@link org.sparkquant.format.gguf.GgmlGptq}
 *       hands to GPTQ's column loop as its grid (GPTQ-calibrated ggml blocks,
 *       {@link org.sparkquant.format.gguf.GgmlQuantizedRows}).</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufWriter} / {@link org.sparkquant.format.gguf.GgufReader}: the GGUF
 *       v3 container, streamed tensor by tensor, with offsets known up front
 *       ({@link org.sparkquant.format.gguf.GgufLayout}); {@link org.sparkquant.format.gguf.GgufSource} reads local
 *       files or any Hadoop file system through {@code io.Storage}.</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufRecipe} / {@link org.sparkquant.format.gguf.GgufPlan}: which type
 *       each tensor gets for a {@link org.sparkquant.format.gguf.LlamaFileType} such as Q4_K_M, and the sizes;
 *       {@link org.sparkquant.format.gguf.GgufNames}: Hugging Face → GGUF names and the q/k row permutation.</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufExporter} (entry point of the export): a dense checkpoint as a GGUF
 *       file of any file type on any storage URI, streamed tensor by tensor; the metadata is
 *       convert_hf_to_gguf's ({@link org.sparkquant.format.gguf.GgufMetadata},
 *       {@link org.sparkquant.format.gguf.GgufVocab}); the tensor data comes from a
 *       {@link org.sparkquant.format.gguf.TensorProducer} — {@link org.sparkquant.format.gguf.RtnProducer}
 *       (llama-quantize's bytes) by default, GPTQ-calibrated blocks from the Spark pipeline.</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufModel}: a GGUF file as a Hugging Face model for the forward pass
 *       (config, dequantizing tensor view under HF names, tokenizer rebuilt by
 *       {@link org.sparkquant.format.gguf.GgufTokenizerJson}).</li>
 *   <li>{@link org.sparkquant.format.gguf.GgufImatrix}: llama.cpp importance-matrix files (GGUF and legacy .dat)
 *       for {@code llama-quantize --imatrix}, and their importance for the RTN producer.</li>
 * </ul>
 */
package org.sparkquant.format.gguf;
