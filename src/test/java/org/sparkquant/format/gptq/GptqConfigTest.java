package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;

class GptqConfigTest {
    private static JsonNode json(String s) throws Exception {
        return new ObjectMapper().readTree(s);
    }

    @Test
    void parsesAutoGptqConfig() throws Exception {
        // ISTA-DASLab/Llama-3-8B-Instruct-GPTQ-4bit, as quoted in docs/formats.md
        GptqConfig c = GptqConfig.parse(json("""
                {"bits":4,"group_size":128,"damp_percent":0.01,"desc_act":true,"static_groups":false,"sym":true,
                "true_sequential":true,"model_name_or_path":null,"model_file_base_name":"model","quant_method":"gptq",
                "checkpoint_format":"gptq"}"""), "q.json");
        assertEquals(4, c.bits());
        assertEquals(128, c.groupSize());
        assertTrue(c.descAct());
        assertTrue(c.sym());
        assertEquals(GptqConfig.Format.GPTQ, c.format());
        assertEquals(new GptqConfig.ModuleParams(4, 128, true, true), c.paramsFor("model.layers.0.mlp.up_proj", "q")
                .orElseThrow());
    }

    @Test
    void synonymsAndDefaults() throws Exception {
        GptqConfig c = GptqConfig.parse(json("{\"w_bit\": 3, \"q_group_size\": 64}"), "quant_config.json");
        assertEquals(3, c.bits());
        assertEquals(64, c.groupSize());
        assertTrue(c.sym()); // missing sym → true
        assertEquals(GptqConfig.Format.GPTQ, c.format()); // missing checkpoint_format → gptq
        assertFalse(c.descAct());
        GptqConfig v2 = GptqConfig.parse(json("{\"bits\": 4, \"format\": \"gptq_v2\", \"sym\": false}"), "x");
        assertEquals(GptqConfig.Format.GPTQ_V2, v2.format());
    }

    @Test
    void dynamicExclusionsComeFirstThenOverrides() throws Exception {
        GptqConfig c = GptqConfig.parse(json("""
                {"bits": 4, "group_size": 128, "sym": true, "dynamic": {
                  "+:.*mlp\\\\..*": {"bits": 8, "group_size": 32},
                  "-:^model\\\\.layers\\\\.1\\\\.mlp\\\\.down_proj$": {},
                  "model\\\\.layers\\\\.0\\\\.self_attn": {"desc_act": true}
                }}"""), "q.json");
        assertTrue(c.paramsFor("model.layers.1.mlp.down_proj", "q").isEmpty());
        assertEquals(new GptqConfig.ModuleParams(8, 32, true, false),
                c.paramsFor("model.layers.10.mlp.down_proj", "q").orElseThrow());
        assertEquals(new GptqConfig.ModuleParams(4, 128, true, true),
                c.paramsFor("model.layers.0.self_attn.q_proj", "q").orElseThrow());
        // re.match anchors at the start only
        assertEquals(new GptqConfig.ModuleParams(4, 128, true, false),
                c.paramsFor("model.layers.10.self_attn.q_proj", "q").orElseThrow());
    }

    @Test
    void modulesInBlockToQuantize() throws Exception {
        GptqConfig c = GptqConfig.parse(json("""
                {"bits": 4, "modules_in_block_to_quantize": [["self_attn.q_proj"], ["mlp.down_proj"]]}"""), "c");
        assertTrue(c.paramsFor("model.layers.0.self_attn.q_proj", "c").isPresent());
        assertTrue(c.paramsFor("model.layers.0.self_attn.k_proj", "c").isEmpty());
    }

    @Test
    void writtenConfigParsesBack() {
        GptqConfig c = GptqConfig.of(3, 64, false).withOptions(true, true, false, 0.05, 2.4)
                .withQuantizer(List.of("sparkquant:dev"))
                .withDynamic(List.of(GptqConfig.DynamicRule.exclude("^a\\.b$")));
        assertEquals(GptqConfig.Format.GPTQ_V2, c.format());
        GptqConfig back = GptqConfig.parse(c.toJson(), "written");
        assertEquals(c, back);
        assertEquals("gptq", c.toJson().get("quant_method").asText());
        assertEquals("int32", c.toJson().get("pack_dtype").asText());
        assertEquals(2.4, c.toJson().get("meta").get("mse").asDouble());
    }

    @Test
    void rejectsWhatAGptqReaderCannotHonour() {
        String[][] cases = {
            {"{\"bits\": 5}", "bits 5 is not supported"},
            {"{\"group_size\": 128}", "missing bits"},
            {"{\"bits\": 4, \"group_size\": 0}", "group_size"},
            {"{\"bits\": 4, \"checkpoint_format\": \"marlin\"}", "checkpoint_format 'marlin'"},
            {"{\"bits\": 4, \"quant_method\": \"awq\"}", "quant_method 'awq'"},
            {"{\"bits\": 4, \"is_marlin_format\": true}", "Marlin"},
            {"{\"bits\": 4, \"pack_dtype\": \"int64\"}", "pack_dtype"},
            {"{\"bits\": 4, \"sym\": \"yes\"}", "sym must be true or false"},
            {"{\"bits\": 4, \"dynamic\": {\"-:(\": {}}}", "not a valid regular expression"},
            {"{\"bits\": 4, \"dynamic\": {\".*\": {\"bits\": 6}}}", "bits 6"},
            {"[1]", "not a JSON object"},
        };
        for (String[] c : cases) {
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> GptqConfig.parse(json(c[0]), "f.json"),
                    c[0]);
            assertTrue(e.getMessage().startsWith("f.json: ") && e.getMessage().contains(c[1]), e.getMessage());
            assertEquals(2, e.exitCode());
        }
    }
}
