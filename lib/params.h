#ifndef OFA_PARAMS_H
#define OFA_PARAMS_H
#endif
