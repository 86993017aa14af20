#ifndef OFA_CLI_H
#define OFA_CLI_H
#endif
