/** One thing wrong, said so an auditor can act on it. `where` is an archive key (or a package file). */
export interface Finding {
  code: string;
  where: string;
  message: string;
}
