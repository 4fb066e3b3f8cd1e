/**
 * The HTML run report: {@link org.sparkquant.report.ReportHtml#render} turns a run's
 * {@code quantization_report.json} into one self-contained page (inline CSS and SVG charts drawn here, no script, no
 * external resource). A pure function of the JSON, so a finished run's page can be rendered again from its JSON
 * ({@code sparkquant report}). Depends on Jackson only.
 */
package org.sparkquant.report;
