/**
 * GPTQ as AutoGPTQ / GPTQModel run it, plus round-to-nearest and Hessian accumulation. Entry point: {@link
 * org.sparkquant.gptq.Gptq}.
 *
 * <ul>
 *   <li>{@link org.sparkquant.gptq.HessianAccumulator}: mergeable, exactly summed Σxᵀx partials (bit-identical for any
 *       partition of the calibration sequences), row tiles for wide inputs; {@link org.sparkquant.gptq.Hessian}: the
 *       normalised 2/n·Σxᵀx.</li>
 *   <li>{@link org.sparkquant.gptq.Gptq#prepare} (step a, once per distinct layer input, broadcast): dead columns,
 *       act-order, damping with retry, the Cholesky factor of H⁻¹ ({@link org.sparkquant.gptq.GptqPreparation}).</li>
 *   <li>{@link org.sparkquant.gptq.Gptq#quantize} (step b, any block of output rows on any executor; byte-identical
 *       for any row partition): GPTQ's column loop ({@link org.sparkquant.gptq.GptqLoop}) onto a
 *       {@link org.sparkquant.gptq.ColumnQuantizer}: the reference min-max grid gives codes, scales, zeros, g_idx,
 *       dequantized rows, losses ({@link org.sparkquant.gptq.QuantizedRows}); other grids (ggml's block codecs in
 *       the GGUF package) plug in the same way. This package imports no file format.</li>
 *   <li>{@link org.sparkquant.gptq.Rtn}: the same quantizer without error feedback.</li>
 * </ul>
 * Golden data: {@code python/gptq_reference.py} (torch fp64, column by column) writes
 * {@code src/test/resources/fixtures/gptq}.
 */
package org.sparkquant.gptq;
