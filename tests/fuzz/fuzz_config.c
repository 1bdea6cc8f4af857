/* fuzz_config.c — libFuzzer target for the configuration loader (src/config.c).
 *
 * Any input is a YAML or JSON document for rlb_config_load_string(); a valid configuration is
 * also checked against the ALB quotas (rlb_config_alb_limits()). Everything is freed, so
 * LeakSanitizer reports whatever the loader leaks on any path, valid or not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("fuzz.yaml", text, size, &errs);
    if (cfg) {
        struct rlb_config_errors lim = {0};
        rlb_config_alb_limits(cfg, &lim);
        rlb_config_errors_free(&lim);
        rlb_config_free(cfg);
    } else if (errs.n == 0) {
        __builtin_trap(); /* an invalid configuration must say why */
    }
    rlb_config_errors_free(&errs);
    free(text);
    return 0;
}
