package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.sparkquant.testing.TestPaths;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * The README's command table documents every option of every command (the options all commands share are listed
 * once, below the table), and {@code --help} shows no hidden option.
 */
class ReadmeOptionsTest {
    private static final Set<String> STANDARD = Set.of("--help", "--version");

    @Test
    void everyOptionOfEveryCommandIsInTheReadme() throws Exception {
        List<String> readme = Files.readAllLines(TestPaths.repository().resolve("README.md"));
        int at = readme.stream().filter(l -> l.startsWith("Options of every command:")).findFirst()
                .map(readme::indexOf).orElseThrow(() -> new AssertionError("README: no 'Options of every command:'"));
        StringBuilder paragraph = new StringBuilder();
        for (int i = at; i < readme.size() && !readme.get(i).isBlank(); i++) {
            paragraph.append(readme.get(i)).append(' ');
        }
        String commonLine = paragraph.toString();
        CommandLine cli = new CommandLine(new SparkQuant());
        List<String> missing = new ArrayList<>();
        for (var e : cli.getSubcommands().entrySet()) {
            String name = e.getKey();
            if (name.equals("help")) {
                continue;
            }
            CommandSpec spec = e.getValue().getCommandSpec();
            String row = readme.stream().filter(l -> l.startsWith("| `" + name + " ")).findFirst().orElse(null);
            if (row == null) {
                missing.add(name + " (no row in the command table)");
                continue;
            }
            for (OptionSpec o : spec.options()) {
                String option = o.longestName();
                assertTrue(!o.hidden(), name + " has a hidden option " + option);
                if (STANDARD.contains(option)) {
                    continue;
                }
                // the options of every command (CommonOptions) are listed once; other mixins' per command
                var common = spec.mixins().get("common");
                boolean shared = common != null && common.findOption(option) != null;
                String where = shared ? commonLine : row;
                List<String> forms = List.of("`" + option, " " + option + " ", "[" + option, "|" + option);
                if (forms.stream().noneMatch(where::contains)) {
                    missing.add(name + " " + option);
                }
            }
        }
        assertEquals(List.of(), missing, "options missing from README.md");
    }
}
