#ifndef OFA_OPTIM_H
#define OFA_OPTIM_H
#endif
