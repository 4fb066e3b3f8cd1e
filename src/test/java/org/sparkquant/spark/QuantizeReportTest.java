package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.format.gptq.GptqCheckpointWriter;
import org.sparkquant.gptq.QuantConfig;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.SyntheticModel;

/** The report JSON's warnings, memory figures and the page beside it, from the statistics a run returns. */
class QuantizeReportTest {
    @TempDir
    Path tmp;

    @Test
    void raisedDampingDeadColumnsAndProgressWarningsAreReported() throws Exception {
        ModelConfig config = SyntheticModel.write(Storage.local(), tmp.resolve("m").toString(),
                SyntheticModel.Preset.TINY, 2, DType.BF16, 1, 1L << 30);
        ModelInventory inventory = ModelInventory.of(config);
        QuantConfig quant = QuantConfig.defaults().withDampPercent(0.01);
        QuantizeJob job = new QuantizeJob(tmp.resolve("m").toString(), tmp.resolve("out").toString(),
                QuantizeJob.Method.GPTQ, quant, true, "calib.txt", 8, 32, 0, 4, null, 1L << 30,
                GptqCheckpointWriter.Unpackable.DENSE, QuantizeJob.Format.GPTQ, null, false, null,
                QuantizeJob.DEFAULT_EXPERT_MIN_TOKENS, QuantizeJob.ExpertFallback.LAYER, new TreeMap<>());
        Set<String> quantized = new HashSet<>();
        List<BlockStats> blocks = new ArrayList<>();
        Map<String, InputSummary> inputs = new HashMap<>();
        for (List<LinearModule> layer : inventory.layers()) {
            for (LinearModule m : layer) {
                quantized.add(m.name());
                blocks.add(new BlockStats(m.name(), 0, m.outFeatures(), 1, 2, 4, 0.5, "HASWELL",
                        m.layer() == 0 ? "1" : "2", (100L + m.layer()) << 20));
                // layer 0's attention input needed more damping; layer 1's MLP input has dead columns
                double damp = m.layer() == 0 && m.input() == LinearModule.Input.ATTN_IN ? 0.0125 : 0.01;
                int dead = m.layer() == 1 && m.input() == LinearModule.Input.MLP_IN ? 3 : 0;
                inputs.put(m.layer() + "/" + m.input(), new InputSummary(m.input(), m.inFeatures(), 8, 256, damp,
                        dead, null));
            }
        }
        QuantizeReport report = QuantizeReport.of(job, new CheckpointTarget(job), inventory, quantized, blocks,
                inputs);
        Progress progress = new Progress(null, new PrintWriter(new StringWriter()), "test", 2, 0);
        progress.message("warning: calibration is short");
        progress.message("not a warning");
        Path json = tmp.resolve("r.json");
        Path html = tmp.resolve("r.html");
        report.write(Storage.local(), json.toString(), html.toString(), progress);

        JsonNode r = new ObjectMapper().readTree(json.toFile());
        List<String> warnings = new ArrayList<>();
        r.get("warnings").forEach(w -> warnings.add(w.asText()));
        assertEquals(3, warnings.size(), warnings.toString());
        assertEquals("calibration is short", warnings.get(0));
        assertTrue(warnings.get(1).startsWith("layer 0 self_attn.q_proj/k_proj/v_proj: dampening raised from 0.01 "
                + "to 0.0125"), warnings.get(1));
        assertTrue(warnings.get(2).startsWith("layer 1 mlp.gate_proj/up_proj: 3 of 128 input columns"),
                warnings.get(2));
        // per executor, the largest peak its blocks saw
        assertEquals(100L << 20, r.at("/memory/used/executor_peak_rss_bytes/1").asLong());
        assertEquals(101L << 20, r.at("/memory/used/executor_peak_rss_bytes/2").asLong());
        assertEquals(org.sparkquant.model.MemoryPlan.of(inventory, 8, 32, 4).executorBytes(),
                r.at("/memory/plan/executor_bytes").asLong());
        assertEquals(0.0125, r.at("/modules/0/damp_percent").asDouble());
        // the page is the JSON's, and shows the warnings
        String page = Files.readString(html);
        assertEquals(org.sparkquant.report.ReportHtml.render(new ObjectMapper().readTree(json.toFile())), page);
        assertTrue(page.contains("dampening raised from 0.01 to 0.0125"));
        assertTrue(page.contains("executor 2"));
    }
}
