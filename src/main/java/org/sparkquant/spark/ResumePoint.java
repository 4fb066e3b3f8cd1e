package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;

/**
 * Where a run starts: afresh, recording its settings in {@code _work/run.json}, or with {@code --resume} after the
 * last layer that {@code _work/progress.json} records as finished, when the settings are the same.
 */
final class ResumePoint {
    static final String RUN = "run.json";
    static final String PROGRESS = "progress.json";

    private ResumePoint() {}

    /** Returns the number of layers a resumed run has already finished (0 for a new run). */
    static int begin(WorkDir work, QuantizeJob job, boolean resume, Progress progress) {
        String out = job.output();
        boolean partial = work.exists(RUN);
        if (partial && !resume) {
            throw SparkQuantException.badInput(out + " holds an unfinished run; add --resume to continue it or "
                    + "--overwrite to start over");
        }
        if (partial) {
            String previous = work.read(RUN);
            if (!previous.equals(job.describe())) {
                throw SparkQuantException.badInput(out + ": --resume needs the same settings as the unfinished run, "
                        + "but " + differences(previous, job.describe()) + " (" + work.path(RUN) + ")");
            }
            int done = 0;
            if (work.exists(PROGRESS)) {
                try {
                    JsonNode p = new ObjectMapper().readTree(work.read(PROGRESS));
                    done = p.path("layers_done").asInt(0);
                } catch (Exception e) {
                    throw SparkQuantException.badInput(work.path(PROGRESS) + ": unreadable progress record");
                }
            }
            progress.message("resuming " + out + " after " + done + " finished layer(s)");
            progress.resumedAt(done);
            return done;
        }
        if (resume) {
            progress.message("--resume: " + out + " holds no unfinished run; starting a new one");
        }
        work.mkdirs();
        work.replace(RUN, job.describe());
        return 0;
    }

    /** The settings that differ between two run descriptions, e.g. "quant.bits was 4, now 3". */
    static String differences(String previous, String current) {
        List<String> out = new ArrayList<>();
        try {
            ObjectMapper mapper = new ObjectMapper();
            diff("", mapper.readTree(previous), mapper.readTree(current), out);
        } catch (Exception e) {
            return "its settings record is unreadable";
        }
        return out.isEmpty() ? "the settings records differ" : String.join(", ", out);
    }

    private static void diff(String prefix, JsonNode a, JsonNode b, List<String> out) {
        if (a.isObject() && b.isObject()) {
            Set<String> names = new TreeSet<>();
            a.fieldNames().forEachRemaining(names::add);
            b.fieldNames().forEachRemaining(names::add);
            for (String name : names) {
                diff(prefix + name + ".", a.path(name), b.path(name), out);
            }
        } else if (!a.equals(b)) {
            String name = prefix.substring(0, prefix.length() - 1);
            out.add(name + " was " + (a.isMissingNode() ? "absent" : a.toString()) + ", now "
                    + (b.isMissingNode() ? "absent" : b.toString()));
        }
    }

    /** Records that the first {@code layers} layers are finished (their state is staged). */
    static void layersDone(WorkDir work, int layers) {
        work.replace(PROGRESS, "{\"layers_done\": " + layers + "}\n");
    }
}
