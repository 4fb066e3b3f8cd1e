package org.sparkquant.spark;

import java.io.Serializable;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;

/**
 * The rule for routed experts with few calibration tokens ({@code --expert-min-tokens}, {@code --expert-fallback}): an
 * expert is below the threshold when fewer tokens were routed to it than the threshold (counted at its gate/up input);
 * its modules are then quantized with the layer's Hessians (gate/up: the Hessian of every token's MLP input; down: its
 * activation over every token) or by round-to-nearest. A function of the staged summaries, so a resumed run decides
 * the same.
 */
final class ExpertRules {
    private ExpertRules() {}

    /** Whether expert {@code expert} of {@code layer} is below the token threshold. */
    static boolean below(QuantizeJob job, Map<String, InputSummary> inputs, int layer, int expert) {
        InputSummary s = inputs.get(LinearModule.hessianKey(layer, Input.MLP_IN, expert));
        if (s == null) {
            throw new IllegalStateException("no gate/up Hessian summary of layer " + layer + " expert " + expert);
        }
        return s.tokens() < job.expertMinTokens();
    }

    /** The plan of a group of modules: which routed experts' modules use another Hessian or none. */
    static Plan plan(QuantizeJob job, Map<String, InputSummary> inputs, Iterable<LinearModule> modules) {
        Map<String, LayerHessians.Key> substitutes = new TreeMap<>();
        Set<String> rtn = new TreeSet<>();
        for (LinearModule m : modules) {
            if (!m.routed() || !below(job, inputs, m.layer(), m.expert())) {
                continue;
            }
            if (job.expertFallback() == QuantizeJob.ExpertFallback.RTN) {
                rtn.add(m.name());
            } else if (m.input() == Input.MLP_IN) {
                substitutes.put(m.name(), new LayerHessians.Key(Input.MLP_IN, -1, m.inFeatures()));
            }
        }
        return new Plan(substitutes, rtn);
    }

    /** Modules quantized with a Hessian other than their own, and modules quantized by round-to-nearest. */
    record Plan(Map<String, LayerHessians.Key> substitutes, Set<String> rtnModules) implements Serializable {
        static final Plan NONE = new Plan(Map.of(), Set.of());

        LayerHessians.Key hessianOf(LinearModule m) {
            LayerHessians.Key k = substitutes.get(m.name());
            return k != null ? k : LayerHessians.Key.of(m);
        }

        boolean rtn(LinearModule m) {
            return rtnModules.contains(m.name());
        }
    }
}
