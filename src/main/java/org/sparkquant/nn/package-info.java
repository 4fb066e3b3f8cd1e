/**
 * The fp32 forward pass of the llama family (llama, mistral, qwen2, qwen3) on ND4J, matching Hugging Face
 * transformers within fp32 rounding, built to stream: one decoder layer's weights at a time.
 *
 * <ul>
 *   <li>{@link org.sparkquant.nn.CausalLM}: the entry point, a checkpoint as streamable steps: the
 *       {@link org.sparkquant.nn.TokenEmbedding} lookup (reads only the needed rows), per-layer
 *       {@link org.sparkquant.nn.LayerWeights}, the {@link org.sparkquant.nn.OutputHead} (final norm, lm_head,
 *       chunked log-softmax NLL for 150k vocabularies).</li>
 *   <li>{@link org.sparkquant.nn.DecoderLayer}: one layer over a {@link org.sparkquant.nn.SequenceBatch} of
 *       sequences stacked as {@code [tokens, hidden]}, with {@link org.sparkquant.nn.LayerHooks} receiving the input
 *       of every linear module, and {@code runUntil} for GPTQ's true-sequential groups; modules are
 *       {@link org.sparkquant.nn.LinearWeights}, replaceable one by one (dense or dequantized on demand).</li>
 *   <li>{@link org.sparkquant.nn.PerplexityEvaluator}: local perplexity with the GPTQ protocol, the per-partition
 *       building block of the Spark {@code eval}; results add up as {@link org.sparkquant.nn.Perplexity}.</li>
 * </ul>
 */
package org.sparkquant.nn;
