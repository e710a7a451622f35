/*
 * test_csv.c - the RFC 4180 reader: quoting, line ends, limits, errors.
 */
#include "eval/csv.h"
#include "test.h"

/* Reads every record of s; returns the record count or the error code.
 * Field texts of the first 8 records x 4 fields go to out. */
static char out[8][4][64];
static size_t nfields[8];

static int read_all(const char *s, struct sl_err *err)
{
    struct sl_csv_field f[4];
    size_t pos = 0, nf, rec = 0;
    int rc;
    memset(out, 0, sizeof out);
    while ((rc = sl_csv_next(s, strlen(s), &pos, f, 4, &nf, err)) == 1) {
        if (rec < 8) {
            nfields[rec] = nf;
            for (size_t i = 0; i < nf; i++) sl_csv_field_copy(&f[i], out[rec][i], 64);
        }
        rec++;
    }
    return rc < 0 ? rc : (int)rec;
}

static void csv_reads_quoted_multiline_field(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("prompt,a,b\n\"line 1\nline 2\",True,False\n", &err), 2);
    T_EQ_STR(out[1][0], "line 1\nline 2");
    T_EQ_STR(out[1][1], "True");
    T_EQ_INT(nfields[1], 3);
}

static void csv_unescapes_doubled_quotes(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("\"A \"\"dished face\"\" profile\",x\n", &err), 1);
    T_EQ_STR(out[0][0], "A \"dished face\" profile");
    struct sl_csv_field f[2];
    size_t pos = 0, nf;
    const char *s = "\"say \"\"hi\"\"\"";
    T_EQ_INT(sl_csv_next(s, strlen(s), &pos, f, 2, &nf, &err), 1);
    T_EQ_INT(sl_csv_field_len(&f[0]), 8);
    T_TRUE(sl_csv_field_eq(&f[0], "say \"hi\""));
    T_TRUE(!sl_csv_field_eq(&f[0], "say \"hi"));
}

static void csv_accepts_crlf_and_a_missing_final_newline(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("a,b\r\nc,\"d\r\ne\"\r\nf,g", &err), 3);
    T_EQ_STR(out[1][1], "d\r\ne");
    T_EQ_STR(out[2][0], "f");
    T_EQ_STR(out[2][1], "g");
}

static void csv_keeps_empty_fields_and_skips_blank_lines(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("\n\na,,\"\"\n\n\nb\n\n", &err), 2);
    T_EQ_INT(nfields[0], 3);
    T_EQ_STR(out[0][1], "");
    T_EQ_STR(out[0][2], "");
    T_EQ_STR(out[1][0], "b");
    T_EQ_INT(read_all("", &err), 0);
}

static void csv_rejects_an_unclosed_quote_with_its_line(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("a,b\nc,d\n\"never closed,\nmore\n", &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "line 3") != NULL);
}

static void csv_rejects_a_quote_inside_an_unquoted_field(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("ab\"c,d\n", &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "quote inside") != NULL);
}

static void csv_rejects_data_after_a_closing_quote(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("\"ab\"c,d\n", &err), SL_EFORMAT);
    T_EQ_INT(read_all("\"ab\"\r,d\n", &err), SL_EFORMAT); /* a bare CR is not a line end */
}

static void csv_rejects_more_fields_than_the_caller_holds(void)
{
    struct sl_err err = {0};
    T_EQ_INT(read_all("1,2,3,4,5\n", &err), SL_ERANGE);
    T_TRUE(strstr(err.msg, "more than 4 fields") != NULL);
}

static void csv_field_copy_reports_a_small_buffer(void)
{
    struct sl_csv_field f[1];
    size_t pos = 0, nf;
    char small[4];
    T_EQ_INT(sl_csv_next("abcdef", 6, &pos, f, 1, &nf, NULL), 1);
    T_EQ_INT(sl_csv_field_copy(&f[0], small, sizeof small), SL_ERANGE);
    char ok[7];
    T_EQ_INT(sl_csv_field_copy(&f[0], ok, sizeof ok), 6);
    T_EQ_STR(ok, "abcdef");
}

static void csv_reads_a_routellm_file(void)
{
    const char *path = t_asset("datasets/routellm/mmlu_responses/mmlu_anatomy.csv");
    size_t len;
    char *buf = path ? t_read_file(path, &len) : NULL;
    if (!buf) {
        t_skip("../shared/assets/datasets/routellm absent");
        return;
    }
    struct sl_csv_field f[8];
    size_t pos = 0, nf, rec = 0;
    struct sl_err err = {0};
    int rc;
    while ((rc = sl_csv_next(buf, len, &pos, f, 8, &nf, &err)) == 1) {
        T_EQ_INT(nf, 3);
        rec++;
    }
    T_EQ_INT(rc, 0);
    T_EQ_INT(rec, 136); /* header + 135 anatomy questions */
    free(buf);
}

int main(void)
{
    T_RUN(csv_reads_quoted_multiline_field);
    T_RUN(csv_unescapes_doubled_quotes);
    T_RUN(csv_accepts_crlf_and_a_missing_final_newline);
    T_RUN(csv_keeps_empty_fields_and_skips_blank_lines);
    T_RUN(csv_rejects_an_unclosed_quote_with_its_line);
    T_RUN(csv_rejects_a_quote_inside_an_unquoted_field);
    T_RUN(csv_rejects_data_after_a_closing_quote);
    T_RUN(csv_rejects_more_fields_than_the_caller_holds);
    T_RUN(csv_field_copy_reports_a_small_buffer);
    T_RUN(csv_reads_a_routellm_file);
    return t_done();
}
