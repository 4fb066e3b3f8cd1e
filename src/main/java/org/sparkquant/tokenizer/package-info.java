/**
 * Tokenization with a model's Hugging Face {@code tokenizer.json} (byte-level BPE, SentencePiece-style BPE with byte
 * fallback, ...) through DJL's bindings of the Rust tokenizers library: {@link org.sparkquant.tokenizer.TextTokenizer}
 * is the entry point, with the model's BOS policy and a vocabulary check against its config.
 */
package org.sparkquant.tokenizer;
