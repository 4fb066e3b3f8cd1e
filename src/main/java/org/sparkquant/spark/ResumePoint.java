package org.sparkquant.spark;

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
                throw SparkQuantException.badInput(out + ": --resume needs the same settings as the unfinished run ("
                        + work.path(RUN) + ")");
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
        work.mkdirs();
        work.replace(RUN, job.describe());
        return 0;
    }

    /** Records that the first {@code layers} layers are finished (their state is staged). */
    static void layersDone(WorkDir work, int layers) {
        work.replace(PROGRESS, "{\"layers_done\": " + layers + "}\n");
    }
}
