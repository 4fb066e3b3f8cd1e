package org.sparkquant.model;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.sparkquant.testing.TestPython;

/** Mistral's sliding window as transformers reads config.json: missing key, explicit null, explicit value. */
class MistralSlidingWindowTest {
    private static final String BASE = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
            + "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":100";

    @Test
    void windowIsReadLikeTransformers() {
        Path python = TestPython.require("transformers");
        String script = "import json,sys,transformers\n"
                + "for extra in sys.argv[1:]:\n"
                + "    d=json.loads(extra); d.pop('model_type')\n"
                + "    w=transformers.MistralConfig(**d).sliding_window\n"
                + "    print(0 if w is None else w)\n";
        List<String> configs = List.of(BASE + "}", BASE + ",\"sliding_window\":null}", BASE + ",\"sliding_window\":7}");
        List<String> args = new java.util.ArrayList<>(List.of("-c", script));
        args.addAll(configs);
        List<String> expected = TestPython.check(python, args, 120).lines().toList();
        for (int i = 0; i < configs.size(); i++) {
            assertEquals(Integer.parseInt(expected.get(i).strip()),
                    ModelConfig.parse(configs.get(i), "config.json").slidingWindow(), configs.get(i));
        }
    }
}
